// SPDX-License-Identifier: GPL-2.0-only
/*
 * Parser for the kvm exit_stats debugfs format, version 1.
 *
 * The input is untrusted (a saved file may be anything): every line is
 * checked for its exact shape, numbers must fit in 64 bits and the number
 * of rows is bounded, so that bad input ends in an error, never a crash or
 * a wrong table.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exitstats.h"

static const char *const header_keys[] = {
	"kvm_exit_stats", "vendor", "clock", "tsc_khz", "since_reset_ns",
};

#define COLUMNS "reason name count cycles min avg max hist"

struct cursor {
	const char *p, *end;
	unsigned int line;
	char *err;
	size_t errlen;
};

static int fail(struct cursor *c, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(c->err, c->errlen, "line %u: ", c->line);
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < c->errlen)
		vsnprintf(c->err + n, c->errlen - n, fmt, ap);
	va_end(ap);
	return -1;
}

/* Next line without its '\n'; NULL at the end.  Rejects NUL bytes. */
static const char *next_line(struct cursor *c, size_t *len)
{
	const char *start = c->p, *nl;

	if (c->p >= c->end)
		return NULL;
	nl = memchr(c->p, '\n', c->end - c->p);
	if (!nl) {
		c->line++;
		*len = c->end - c->p;
		c->p = c->end;
		/* The kernel always ends the last line. */
		fail(c, "truncated line (no newline at end of input)");
		return NULL;
	}
	c->line++;
	*len = nl - start;
	c->p = nl + 1;
	return start;
}

/* Parse a decimal u64 that makes up the whole token [s, s + n). */
static int parse_u64(const char *s, size_t n, uint64_t *v)
{
	uint64_t x = 0;
	size_t i;

	if (!n || n > 20)
		return -1;
	for (i = 0; i < n; i++) {
		unsigned int d = (unsigned char)s[i] - '0';

		if (d > 9)
			return -1;
		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	*v = x;
	return 0;
}

/* Split a line into at most @max space-separated tokens. */
static int split(const char *s, size_t len, const char **tok, size_t *tlen,
		 int max)
{
	int n = 0;
	size_t i = 0;

	while (i < len) {
		size_t j = i;

		while (j < len && s[j] != ' ')
			j++;
		if (j == i || n == max)
			return -1;	/* empty field or too many */
		tok[n] = s + i;
		tlen[n++] = j - i;
		i = j + (j < len);
		if (j < len && i == len)
			return -1;	/* trailing space */
	}
	return n;
}

static bool printable_word(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return false;
	return true;
}

static int parse_hist(struct cursor *c, const char *s, size_t n,
		      struct es_row *row)
{
	size_t i = 0;
	uint64_t sum = 0;
	int last = -1;

	while (i < n) {
		size_t j = i, colon;
		uint64_t b, cnt;

		while (j < n && s[j] != ',')
			j++;
		colon = i;
		while (colon < j && s[colon] != ':')
			colon++;
		if (colon == j || parse_u64(s + i, colon - i, &b) ||
		    parse_u64(s + colon + 1, j - colon - 1, &cnt))
			return fail(c, "bad histogram bucket '%.*s'",
				    (int)(j - i), s + i);
		if (b >= ES_HIST || (int)b <= last)
			return fail(c, "histogram bucket %llu out of order or range",
				    (unsigned long long)b);
		if (!cnt || cnt > row->count - sum)
			return fail(c, "histogram counts do not add up to count");
		sum += cnt;
		row->hist[b] = cnt;
		last = (int)b;
		i = j + 1;
		if (j < n && i == n)
			return fail(c, "trailing ',' in histogram");
	}
	if (sum != row->count)
		return fail(c, "histogram counts do not add up to count");
	return 0;
}

static int parse_row(struct cursor *c, const char *s, size_t len,
		     struct es_row *row)
{
	const char *tok[8];
	size_t tlen[8];
	uint64_t *nums[5] = { &row->count, &row->cycles, &row->min,
			      &row->avg, &row->max };
	uint64_t reason;
	int n, i;

	memset(row, 0, sizeof(*row));
	n = split(s, len, tok, tlen, 8);
	if (n < 7)
		return fail(c, "expected 8 fields (%s)", COLUMNS);

	if (tlen[0] == 1 && tok[0][0] == '-') {
		row->has_reason = false;
	} else if (parse_u64(tok[0], tlen[0], &reason) || reason > UINT32_MAX) {
		return fail(c, "bad exit reason '%.*s'", (int)tlen[0], tok[0]);
	} else {
		row->has_reason = true;
		row->reason = (uint32_t)reason;
	}

	if (tlen[1] >= ES_NAME_MAX || !printable_word(tok[1], tlen[1]))
		return fail(c, "bad exit reason name");
	memcpy(row->name, tok[1], tlen[1]);

	for (i = 0; i < 5; i++)
		if (parse_u64(tok[2 + i], tlen[2 + i], nums[i]))
			return fail(c, "bad number '%.*s' (not a 64-bit unsigned integer)",
				    (int)tlen[2 + i], tok[2 + i]);

	if (row->count && !(row->min <= row->avg && row->avg <= row->max))
		return fail(c, "min <= avg <= max does not hold");
	if (n == 7) {
		if (row->count)
			return fail(c, "missing histogram");
		return 0;
	}
	return parse_hist(c, tok[7], tlen[7], row);
}

int es_parse(const char *buf, size_t len, struct es_stats *st, char *err,
	     size_t errlen)
{
	struct cursor c = { buf, buf + len, 0, err, errlen };
	bool have_total = false;
	const char *line;
	size_t n, i, cap = 0;

	memset(st, 0, sizeof(*st));
	if (errlen)
		err[0] = '\0';
	if (!len) {
		snprintf(err, errlen, "empty input");
		return -1;
	}

	for (i = 0; i < sizeof(header_keys) / sizeof(header_keys[0]); i++) {
		size_t klen = strlen(header_keys[i]);
		const char *v;
		uint64_t num;

		line = next_line(&c, &n);
		if (!line)
			return err[0] ? -1 : fail(&c, "missing header '# %s'", header_keys[i]);
		if (n < klen + 3 || memcmp(line, "# ", 2) ||
		    memcmp(line + 2, header_keys[i], klen) || line[2 + klen] != ' ')
			return fail(&c, "expected header '# %s VALUE'%s", header_keys[i],
				    i ? "" : ": not a kvm exit_stats file");
		v = line + 3 + klen;
		n -= 3 + klen;
		switch (i) {
		case 0:
			if (parse_u64(v, n, &num))
				return fail(&c, "bad format version");
			if (num != ES_VERSION)
				return fail(&c, "format version %llu, this kvm-exitstat reads version %d",
					    (unsigned long long)num, ES_VERSION);
			break;
		case 1:
			if (n != 3 || (memcmp(v, "VMX", 3) && memcmp(v, "SVM", 3)))
				return fail(&c, "vendor must be VMX or SVM");
			memcpy(st->vendor, v, 3);
			break;
		case 2:
			if (n != 3 || memcmp(v, "tsc", 3))
				return fail(&c, "unknown clock '%.*s'", (int)n, v);
			break;
		case 3:
			if (parse_u64(v, n, &st->tsc_khz) || !st->tsc_khz)
				return fail(&c, "bad tsc_khz");
			break;
		case 4:
			if (parse_u64(v, n, &st->since_ns))
				return fail(&c, "bad since_reset_ns");
			break;
		}
	}
	line = next_line(&c, &n);
	if (!line)
		return err[0] ? -1 : fail(&c, "missing column line");
	if (n != strlen("# " COLUMNS) || memcmp(line, "# " COLUMNS, n))
		return fail(&c, "expected column line '# %s'", COLUMNS);

	while ((line = next_line(&c, &n))) {
		struct es_row row;

		if (have_total)
			goto bad;
		if (parse_row(&c, line, n, &row))
			goto bad;
		if (!row.has_reason && !strcmp(row.name, "TOTAL")) {
			st->total = row;
			have_total = true;
			continue;
		}
		if (st->nrows == ES_MAX_ROWS) {
			fail(&c, "more than %d rows", ES_MAX_ROWS);
			goto bad;
		}
		if (st->nrows == cap) {
			struct es_row *r;

			cap = cap ? cap * 2 : 64;
			r = realloc(st->rows, cap * sizeof(*r));
			if (!r) {
				fail(&c, "%s", strerror(ENOMEM));
				goto bad;
			}
			st->rows = r;
		}
		st->rows[st->nrows++] = row;
	}
	if (err[0])
		goto bad;
	if (!have_total) {
		fail(&c, "missing '- TOTAL' line (truncated file?)");
		goto bad;
	}
	return 0;
bad:
	if (have_total && line && !err[0])
		fail(&c, "data after the TOTAL line");
	es_free(st);
	return -1;
}

void es_free(struct es_stats *st)
{
	free(st->rows);
	st->rows = NULL;
	st->nrows = 0;
}

struct es_row *es_find(const struct es_stats *st, const struct es_row *row)
{
	size_t i;

	for (i = 0; i < st->nrows; i++)
		if (st->rows[i].has_reason == row->has_reason &&
		    st->rows[i].reason == row->reason &&
		    !strcmp(st->rows[i].name, row->name))
			return &st->rows[i];
	return NULL;
}

static void row_add(struct es_row *dst, const struct es_row *src)
{
	int b;

	if (!src->count)
		return;
	/* min and max only cover measured exits (not bucket 0). */
	if (es_measured(src)) {
		if (!es_measured(dst) || src->min < dst->min)
			dst->min = src->min;
		if (src->max > dst->max)
			dst->max = src->max;
	}
	dst->count += src->count;
	dst->cycles += src->cycles;
	for (b = 0; b < ES_HIST; b++)
		dst->hist[b] += src->hist[b];
}

int es_merge(struct es_stats *dst, const struct es_stats *src)
{
	size_t i;

	for (i = 0; i < src->nrows; i++) {
		struct es_row *d = es_find(dst, &src->rows[i]);

		if (!d) {
			d = realloc(dst->rows, (dst->nrows + 1) * sizeof(*d));
			if (!d)
				return -1;
			dst->rows = d;
			dst->rows[dst->nrows++] = src->rows[i];
			continue;
		}
		row_add(d, &src->rows[i]);
	}
	if (!dst->since_ns || src->since_ns > dst->since_ns)
		dst->since_ns = src->since_ns;
	return 0;
}

void es_finish(struct es_stats *st)
{
	size_t i;

	memset(&st->total, 0, sizeof(st->total));
	strcpy(st->total.name, "TOTAL");
	for (i = 0; i < st->nrows; i++) {
		struct es_row *r = &st->rows[i];

		r->avg = es_measured(r) ? r->cycles / es_measured(r) : 0;
		row_add(&st->total, r);
	}
	st->total.avg = es_measured(&st->total) ?
			st->total.cycles / es_measured(&st->total) : 0;
}

uint64_t es_quantile(const struct es_row *row, double q)
{
	uint64_t measured = es_measured(row), seen = 0, want, ub;
	int b;

	if (!measured)
		return 0;
	want = (uint64_t)(q * (double)measured + 0.999999);
	if (want < 1)
		want = 1;
	/* Bucket 0 holds the exits without a time: not part of any quantile. */
	for (b = 1; b < ES_HIST; b++) {
		seen += row->hist[b];
		if (seen >= want)
			break;
	}
	if (b >= ES_HIST - 1)
		return row->max;
	ub = (1ULL << b) - 1;
	/* Bucket b holds [2^(b-1), 2^b): its upper end, within min..max. */
	if (ub > row->max)
		ub = row->max;
	if (ub < row->min)
		ub = row->min;
	return ub;
}
