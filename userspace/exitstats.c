// SPDX-License-Identifier: GPL-2.0-only
/*
 * Parser for the kvm exit_stats debugfs format, versions 1 to 3.
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

#define COLUMNS "reason name count cycles min avg max hist"
#define COLUMNS_V3 "reason name count cycles min avg max fastpath hist"

/* The column line of format @version. */
static const char *columns(unsigned int version)
{
	return version >= 3 ? COLUMNS_V3 : COLUMNS;
}

static bool is_columns(const char *line, size_t n, unsigned int version)
{
	const char *want = columns(version);

	return n == strlen(want) + 2 && !memcmp(line, "# ", 2) &&
	       !memcmp(line + 2, want, n - 2);
}

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
		      unsigned int nbuckets, struct es_row *row)
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
		if (b >= nbuckets)
			return fail(c, "histogram bucket %llu out of range (the file has %u buckets, 0..%u)",
				    (unsigned long long)b, nbuckets, nbuckets - 1);
		if ((int)b <= last)
			return fail(c, "histogram bucket %llu out of order (after bucket %d)",
				    (unsigned long long)b, last);
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

/*
 * The first two fields of a row, of exit_stats or exit_stats_detail: the
 * reason number ('-' for none) and the name.
 */
static int parse_reason_name(struct cursor *c, const char *const *tok,
			     const size_t *tlen, bool *has_reason,
			     uint32_t *reason, char *name)
{
	uint64_t num;

	if (tlen[0] == 1 && tok[0][0] == '-') {
		*has_reason = false;
	} else if (parse_u64(tok[0], tlen[0], &num) || num > UINT32_MAX) {
		return fail(c, "bad exit reason '%.*s'", (int)tlen[0], tok[0]);
	} else {
		*has_reason = true;
		*reason = (uint32_t)num;
	}
	if (tlen[1] >= ES_NAME_MAX || !printable_word(tok[1], tlen[1]))
		return fail(c, "bad exit reason name");
	memcpy(name, tok[1], tlen[1]);
	return 0;
}

static int parse_row(struct cursor *c, const char *s, size_t len,
		     const struct es_layout *l, struct es_row *row)
{
	const char *tok[9];
	size_t tlen[9];
	uint64_t *nums[6] = { &row->count, &row->cycles, &row->min,
			      &row->avg, &row->max, &row->fastpath };
	/* The numbers, and the fields without the histogram. */
	int nnums = l->version >= 3 ? 6 : 5, nfix = 2 + nnums;
	int n, i;

	memset(row, 0, sizeof(*row));
	n = split(s, len, tok, tlen, nfix + 1);
	if (n < nfix)
		return fail(c, "expected %d fields (%s)", nfix + 1,
			    columns(l->version));

	if (parse_reason_name(c, tok, tlen, &row->has_reason, &row->reason,
			      row->name))
		return -1;

	for (i = 0; i < nnums; i++)
		if (parse_u64(tok[2 + i], tlen[2 + i], nums[i]))
			return fail(c, "bad number '%.*s' (not a 64-bit unsigned integer)",
				    (int)tlen[2 + i], tok[2 + i]);

	if (row->count && !(row->min <= row->avg && row->avg <= row->max))
		return fail(c, "min <= avg <= max does not hold");
	if (row->fastpath > row->count)
		return fail(c, "more fastpath exits than exits");
	if (n == nfix) {
		if (row->count)
			return fail(c, "missing histogram");
		return 0;
	}
	return parse_hist(c, tok[nfix], tlen[nfix], l->nbuckets, row);
}

/*
 * The header lines, in the order of version 2; version 1 has the first
 * H_V1_KEYS of them.
 */
enum header {
	H_VERSION, H_VENDOR, H_CLOCK, H_TSC_KHZ, H_SINCE,
	H_BUCKETS, H_MIN_SHIFT, H_SUB_SHIFT, H_NKEYS
};
#define H_V1_KEYS	H_BUCKETS

static const char *const header_keys[H_NKEYS] = {
	[H_VERSION] = "kvm_exit_stats", [H_VENDOR] = "vendor",
	[H_CLOCK] = "clock", [H_TSC_KHZ] = "tsc_khz",
	[H_SINCE] = "since_reset_ns", [H_BUCKETS] = "hist_buckets",
	[H_MIN_SHIFT] = "hist_min_shift", [H_SUB_SHIFT] = "hist_sub_shift",
};

int es_layout_check(const struct es_layout *l, char *err, size_t errlen)
{
	unsigned int n = l->nbuckets, m = l->min_shift, s = l->sub_shift;

	if (s > 4) {
		snprintf(err, errlen, "hist_sub_shift %u: must be 0..4", s);
	} else if (m < 1 || m > 20) {
		snprintf(err, errlen, "hist_min_shift %u: must be 1..20", m);
	} else if (n < 3 || n > ES_HIST_MAX) {
		snprintf(err, errlen, "hist_buckets %u: must be 3..%d", n, ES_HIST_MAX);
	} else if ((n - 3) % (1u << s)) {
		snprintf(err, errlen, "hist_buckets %u does not fit hist_sub_shift %u: hist_buckets - 3 must be a multiple of %u",
			 n, s, 1u << s);
	} else if (m + ((n - 3) >> s) > 63) {
		snprintf(err, errlen, "hist_buckets %u with hist_min_shift %u: buckets beyond 2^63 cycles",
			 n, m);
	} else if (s > m) {
		snprintf(err, errlen, "hist_sub_shift %u larger than hist_min_shift %u: buckets narrower than a cycle",
			 s, m);
	} else {
		return 0;
	}
	return -1;
}

void es_layout_str(const struct es_layout *l, char *buf, size_t len)
{
	if (l->version == 1)
		snprintf(buf, len, "version 1 (%u log2 buckets)", l->nbuckets);
	else
		snprintf(buf, len, "version %u (%u buckets, hist_min_shift %u, hist_sub_shift %u)",
			 l->version, l->nbuckets, l->min_shift, l->sub_shift);
}

void es_bucket_bounds(const struct es_layout *l, unsigned int b,
		      uint64_t *lo, uint64_t *hi)
{
	unsigned int m = l->min_shift, s = l->sub_shift, j, e;

	if (b == 0 || b >= l->nbuckets) {
		*lo = *hi = 0;
	} else if (b == 1) {
		*lo = 1;
		*hi = 1ULL << m;
	} else if (b == l->nbuckets - 1) {
		*lo = 1ULL << (m + ((l->nbuckets - 3) >> s));
		*hi = ES_INF;
	} else {
		/* Version 1 is M = 1, S = 0: bucket b is [2^(b-1), 2^b). */
		j = b - 2;
		e = m + (j >> s);
		*lo = (1ULL << e) + ((uint64_t)(j & ((1u << s) - 1)) << (e - s));
		*hi = *lo + (1ULL << (e - s));
	}
}

/* Split "# KEY VALUE" into KEY and VALUE; false if the line is not one. */
static bool header_line(const char *line, size_t n, const char **key,
			size_t *klen, const char **val, size_t *vlen)
{
	const char *sp;

	if (n < 4 || memcmp(line, "# ", 2))
		return false;
	sp = memchr(line + 2, ' ', n - 2);
	if (!sp || sp == line + 2)
		return false;
	*key = line + 2;
	*klen = sp - *key;
	*val = sp + 1;
	*vlen = line + n - *val;
	return true;
}

static int header_id(const char *key, size_t klen)
{
	int i;

	for (i = 0; i < H_NKEYS; i++)
		if (strlen(header_keys[i]) == klen && !memcmp(key, header_keys[i], klen))
			return i;
	return -1;
}

/*
 * Why @line is not header @want of a file of version @version (nkeys
 * header lines): missing, out of order, of another version or unknown.
 */
static int bad_header(struct cursor *c, const char *line, size_t n,
		      unsigned int version, int nkeys, int want)
{
	const char *key, *val;
	size_t klen, vlen;
	int id;

	if (is_columns(line, n, version))
		return fail(c, "missing header '# %s' (format version %u)",
			    header_keys[want], version);
	if (!header_line(line, n, &key, &klen, &val, &vlen))
		return fail(c, "expected header '# %s VALUE'", header_keys[want]);
	id = header_id(key, klen);
	if (id < 0)
		return fail(c, "unknown header '# %.*s' (expected '# %s')",
			    (int)klen, key, header_keys[want]);
	if (id >= nkeys)
		return fail(c, "header '# %s' is not part of format version %u",
			    header_keys[id], version);
	return fail(c, "header '# %s' out of order or repeated (expected '# %s')",
		    header_keys[id], header_keys[want]);
}

static int parse_shift(struct cursor *c, const char *v, size_t n,
		       const char *what, unsigned int lo, unsigned int hi,
		       unsigned int *out)
{
	uint64_t num;

	if (parse_u64(v, n, &num) || num < lo || num > hi)
		return fail(c, "bad %s '%.*s' (expected %u..%u)", what, (int)n, v,
			    lo, hi);
	*out = (unsigned int)num;
	return 0;
}

/* The header value @v of key @id into @st. */
static int header_value(struct cursor *c, struct es_stats *st, int id,
			const char *v, size_t n)
{
	struct es_layout *l = &st->layout;
	char why[160];

	switch (id) {
	case H_VENDOR:
		if (n != 3 || (memcmp(v, "VMX", 3) && memcmp(v, "SVM", 3)))
			return fail(c, "vendor must be VMX or SVM");
		memcpy(st->vendor, v, 3);
		break;
	case H_CLOCK:
		if (n != 3 || memcmp(v, "tsc", 3))
			return fail(c, "unknown clock '%.*s'", (int)n, v);
		break;
	case H_TSC_KHZ:
		if (parse_u64(v, n, &st->tsc_khz) || !st->tsc_khz)
			return fail(c, "bad tsc_khz");
		break;
	case H_SINCE:
		if (parse_u64(v, n, &st->since_ns))
			return fail(c, "bad since_reset_ns");
		break;
	case H_BUCKETS:
		return parse_shift(c, v, n, "hist_buckets", 3, ES_HIST_MAX,
				   &l->nbuckets);
	case H_MIN_SHIFT:
		return parse_shift(c, v, n, "hist_min_shift", 1, 20, &l->min_shift);
	case H_SUB_SHIFT:
		if (parse_shift(c, v, n, "hist_sub_shift", 0, 4, &l->sub_shift))
			return -1;
		/* The last of the three: check them together. */
		if (es_layout_check(l, why, sizeof(why)))
			return fail(c, "bad histogram layout: %s", why);
		break;
	}
	return 0;
}

static int parse_header(struct cursor *c, struct es_stats *st)
{
	const char *line, *key, *v;
	size_t n, klen, vlen;
	uint64_t version;
	int i, nkeys;

	line = next_line(c, &n);
	if (!line)
		return c->err[0] ? -1 : fail(c, "missing header '# %s'",
					     header_keys[H_VERSION]);
	if (!header_line(line, n, &key, &klen, &v, &vlen) ||
	    header_id(key, klen) != H_VERSION)
		return fail(c, "expected header '# %s VALUE': not a kvm exit_stats file",
			    header_keys[H_VERSION]);
	if (parse_u64(v, vlen, &version))
		return fail(c, "bad format version");
	if (version < ES_VERSION_MIN || version > ES_VERSION_MAX)
		return fail(c, "format version %llu, this kvm-exitstat reads versions 1 to 3",
			    (unsigned long long)version);
	st->layout.version = (unsigned int)version;
	nkeys = version == 1 ? H_V1_KEYS : H_NKEYS;
	if (version == 1)
		st->layout = (struct es_layout){ 1, ES_V1_BUCKETS, 1, 0 };

	for (i = H_VERSION + 1; i < nkeys; i++) {
		line = next_line(c, &n);
		if (!line)
			return c->err[0] ? -1 : fail(c, "missing header '# %s'",
						     header_keys[i]);
		if (!header_line(line, n, &key, &klen, &v, &vlen) ||
		    header_id(key, klen) != i)
			return bad_header(c, line, n, st->layout.version, nkeys, i);
		if (header_value(c, st, i, v, vlen))
			return -1;
	}

	line = next_line(c, &n);
	if (!line)
		return c->err[0] ? -1 : fail(c, "missing column line");
	if (is_columns(line, n, st->layout.version))
		return 0;
	if (n >= 9 && !memcmp(line, "# reason ", 9))
		return fail(c, "expected column line '# %s' (format version %u)",
			    columns(st->layout.version), st->layout.version);
	if (header_line(line, n, &key, &klen, &v, &vlen)) {
		i = header_id(key, klen);
		if (i >= nkeys)
			return fail(c, "header '# %s' is not part of format version %u",
				    header_keys[i], st->layout.version);
		if (i >= 0)
			return fail(c, "header '# %s' repeated", header_keys[i]);
		return fail(c, "unknown header '# %.*s' (expected the column line '# %s')",
			    (int)klen, key, columns(st->layout.version));
	}
	return fail(c, "expected column line '# %s'", columns(st->layout.version));
}

int es_parse(const char *buf, size_t len, struct es_stats *st, char *err,
	     size_t errlen)
{
	struct cursor c = { buf, buf + len, 0, err, errlen };
	bool have_total = false;
	const char *line;
	size_t n, cap = 0;

	memset(st, 0, sizeof(*st));
	if (errlen)
		err[0] = '\0';
	if (!len) {
		snprintf(err, errlen, "empty input");
		return -1;
	}
	if (parse_header(&c, st))
		return -1;

	while ((line = next_line(&c, &n))) {
		struct es_row row;

		if (have_total)
			goto bad;
		if (parse_row(&c, line, n, &st->layout, &row))
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
	dst->fastpath += src->fastpath;
	dst->cycles += src->cycles;
	for (b = 0; b < ES_HIST_MAX; b++)
		dst->hist[b] += src->hist[b];
}

int es_merge(struct es_stats *dst, const struct es_stats *src, char *err,
	     size_t errlen)
{
	size_t i;

	if (!dst->layout.version) {
		dst->layout = src->layout;
	} else if (!es_layout_equal(&dst->layout, &src->layout)) {
		char a[96], b[96];

		es_layout_str(&dst->layout, a, sizeof(a));
		es_layout_str(&src->layout, b, sizeof(b));
		snprintf(err, errlen, "histogram layout differs: format %s, not %s",
			 b, a);
		return -1;
	}
	for (i = 0; i < src->nrows; i++) {
		struct es_row *d = es_find(dst, &src->rows[i]);

		if (!d) {
			d = realloc(dst->rows, (dst->nrows + 1) * sizeof(*d));
			if (!d) {
				snprintf(err, errlen, "%s", strerror(ENOMEM));
				return -1;
			}
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

uint64_t es_quantile(const struct es_layout *l, const struct es_row *row,
		     double q)
{
	uint64_t measured = es_measured(row), cum = 0, lo, hi;
	double rank, blo, bhi, est;
	unsigned int b;

	if (!measured)
		return 0;
	if (!(q >= 0))
		q = 0;
	if (q > 1)
		q = 1;
	rank = q * (double)measured;
	/*
	 * The first bucket whose cumulative count reaches the rank; bucket 0
	 * holds the exits without a time: not part of any quantile.
	 */
	for (b = 1; b < l->nbuckets && b < ES_HIST_MAX; b++) {
		if (!row->hist[b])
			continue;
		if ((double)(cum + row->hist[b]) >= rank)
			break;
		cum += row->hist[b];
	}
	if (b >= l->nbuckets || b >= ES_HIST_MAX)
		return row->max;	/* buckets short of count: not from es_parse() */
	/*
	 * Interpolate within the bucket, narrowed to [min, max]: the open last
	 * bucket ends at max, and a bucket that holds all exits gives them
	 * exactly.
	 */
	es_bucket_bounds(l, b, &lo, &hi);
	blo = (double)(lo > row->min ? lo : row->min);
	bhi = (double)(hi < row->max ? hi : row->max);
	est = blo + (bhi - blo) * ((rank - (double)cum) / (double)row->hist[b]);
	if (est <= (double)row->min)
		return row->min;
	if (est >= (double)row->max)
		return row->max;
	return (uint64_t)(est + 0.5);
}

/* The L1 row of @st for the reason of L2 row @l2, or NULL. */
static struct es_row *l1_row(const struct es_stats *st, const struct es_row *l2)
{
	const char *name = l2->name + sizeof(ES_L2_PREFIX) - 1;
	size_t i;

	for (i = 0; i < st->nrows; i++)
		if (!es_is_l2(&st->rows[i]) && st->rows[i].name[0] &&
		    st->rows[i].has_reason == l2->has_reason &&
		    st->rows[i].reason == l2->reason &&
		    !strcmp(st->rows[i].name, name))
			return &st->rows[i];
	return NULL;
}

void es_guest_mode(struct es_stats *st, enum es_mode mode)
{
	const size_t plen = sizeof(ES_L2_PREFIX) - 1;
	struct es_row *r, *base;
	size_t i, n = 0;

	if (mode == ES_MODE_SPLIT)
		return;
	/* ALL: add each L2 row to its L1 row (and drop it), or rename it. */
	for (i = 0; mode == ES_MODE_ALL && i < st->nrows; i++) {
		r = &st->rows[i];
		if (!es_is_l2(r))
			continue;
		base = l1_row(st, r);
		if (base) {
			row_add(base, r);
			r->name[0] = '\0';
		} else {
			memmove(r->name, r->name + plen, strlen(r->name) - plen + 1);
		}
	}
	for (i = 0; i < st->nrows; i++) {
		r = &st->rows[i];
		if (!r->name[0] || (mode == ES_MODE_L1 && es_is_l2(r)) ||
		    (mode == ES_MODE_L2 && !es_is_l2(r)))
			continue;
		st->rows[n++] = *r;
	}
	st->nrows = n;
	es_finish(st);
}

/* ----- exit_stats_detail: the sub-reasons ----- */

static const char *const detail_keys[] = {
	"kvm_exit_stats_detail", "vendor", "clock", "tsc_khz", "since_reset_ns",
	"max_keys",
};

#define DETAIL_NKEYS	(sizeof(detail_keys) / sizeof(detail_keys[0]))
#define DETAIL_COLUMNS	"reason name key count cycles avg"

static int parse_detail_header(struct cursor *c, struct es_detail *d)
{
	/* The es_stats header ids of the lines that the two formats share. */
	static const int ids[DETAIL_NKEYS] = { -1, H_VENDOR, H_CLOCK, H_TSC_KHZ,
					       H_SINCE, -1 };
	struct es_stats st;
	const char *line, *key, *v;
	size_t n, klen, vlen, i;
	uint64_t num;

	memset(&st, 0, sizeof(st));
	for (i = 0; i < DETAIL_NKEYS; i++) {
		line = next_line(c, &n);
		if (!line)
			return c->err[0] ? -1 : fail(c, "missing header '# %s'",
						     detail_keys[i]);
		if (!header_line(line, n, &key, &klen, &v, &vlen) ||
		    klen != strlen(detail_keys[i]) || memcmp(key, detail_keys[i], klen)) {
			if (!i)
				return fail(c, "expected header '# %s VALUE': not a kvm exit_stats_detail file",
					    detail_keys[0]);
			return fail(c, "expected header '# %s VALUE'", detail_keys[i]);
		}
		if (ids[i] >= 0) {
			if (header_value(c, &st, ids[i], v, vlen))
				return -1;
			continue;
		}
		if (!i && (parse_u64(v, vlen, &num) || num != ES_DETAIL_VERSION))
			return fail(c, "detail format version '%.*s', this kvm-exitstat reads version %d",
				    (int)vlen, v, ES_DETAIL_VERSION);
		if (i && (parse_u64(v, vlen, &d->max_keys) || !d->max_keys))
			return fail(c, "bad max_keys");
	}
	memcpy(d->vendor, st.vendor, sizeof(d->vendor));
	d->tsc_khz = st.tsc_khz;
	d->since_ns = st.since_ns;

	line = next_line(c, &n);
	if (!line)
		return c->err[0] ? -1 : fail(c, "missing column line");
	if (n != strlen(DETAIL_COLUMNS) + 2 || memcmp(line, "# ", 2) ||
	    memcmp(line + 2, DETAIL_COLUMNS, n - 2))
		return fail(c, "expected column line '# %s'", DETAIL_COLUMNS);
	return 0;
}

static int parse_key_row(struct cursor *c, const char *s, size_t len,
			 struct es_key *k)
{
	const char *tok[6];
	size_t tlen[6];
	uint64_t avg;

	memset(k, 0, sizeof(*k));
	if (split(s, len, tok, tlen, 6) != 6)
		return fail(c, "expected 6 fields (%s)", DETAIL_COLUMNS);
	if (parse_reason_name(c, tok, tlen, &k->has_reason, &k->reason, k->name))
		return -1;
	if (tlen[2] >= ES_NAME_MAX || !printable_word(tok[2], tlen[2]))
		return fail(c, "bad sub-reason");
	memcpy(k->key, tok[2], tlen[2]);
	if (parse_u64(tok[3], tlen[3], &k->count) ||
	    parse_u64(tok[4], tlen[4], &k->cycles) ||
	    parse_u64(tok[5], tlen[5], &avg))
		return fail(c, "bad number (not a 64-bit unsigned integer)");
	if (!k->count)
		return fail(c, "a sub-reason without exits");
	if (avg != k->cycles / k->count)
		return fail(c, "avg is not cycles / count");
	return 0;
}

/* Are @a and @b sub-reasons of the same row? */
static bool same_row(const struct es_key *a, const struct es_key *b)
{
	return a->has_reason == b->has_reason && a->reason == b->reason &&
	       !strcmp(a->name, b->name);
}

static int add_key(struct es_detail *d, const struct es_key *k, size_t *cap)
{
	struct es_key *keys;

	if (d->nkeys == ES_MAX_KEYS)
		return -1;
	if (d->nkeys == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		keys = realloc(d->keys, *cap * sizeof(*keys));
		if (!keys)
			return -1;
		d->keys = keys;
	}
	d->keys[d->nkeys++] = *k;
	return 0;
}

int es_parse_detail(const char *buf, size_t len, struct es_detail *d,
		    char *err, size_t errlen)
{
	struct cursor c = { buf, buf + len, 0, err, errlen };
	const struct es_key *prev;
	size_t n, j, cap = 0;
	const char *line;
	struct es_key k;

	memset(d, 0, sizeof(*d));
	if (errlen)
		err[0] = '\0';
	if (!len) {
		snprintf(err, errlen, "empty input");
		return -1;
	}
	if (parse_detail_header(&c, d))
		return -1;
	while ((line = next_line(&c, &n))) {
		if (parse_key_row(&c, line, n, &k))
			goto bad;
		prev = d->nkeys ? &d->keys[d->nkeys - 1] : NULL;
		if (prev && same_row(prev, &k) && !strcmp(prev->key, "other")) {
			fail(&c, "'other' is not the last sub-reason of %s", k.name);
			goto bad;
		}
		for (j = d->nkeys; j-- > 0;) {
			if (!same_row(&d->keys[j], &k))
				continue;
			if (!strcmp(d->keys[j].key, k.key)) {
				fail(&c, "duplicate sub-reason %s of %s", k.key, k.name);
				goto bad;
			}
			if (j + 1 < d->nkeys && !same_row(&d->keys[j + 1], &k)) {
				fail(&c, "the sub-reasons of %s are not together", k.name);
				goto bad;
			}
		}
		if (add_key(d, &k, &cap)) {
			fail(&c, "more than %d sub-reasons, or out of memory", ES_MAX_KEYS);
			goto bad;
		}
	}
	if (!err[0])
		return 0;
bad:
	es_detail_free(d);
	return -1;
}

void es_detail_free(struct es_detail *d)
{
	free(d->keys);
	d->keys = NULL;
	d->nkeys = 0;
}

/* The entry of @k's row and sub-reason among the first @n of @keys. */
static struct es_key *find_key(struct es_key *keys, size_t n,
			       const struct es_key *k)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (same_row(&keys[i], k) && !strcmp(keys[i].key, k->key))
			return &keys[i];
	return NULL;
}

/* Add the sub-reasons of @src to @dst's: the same ones are summed. */
int es_detail_merge(struct es_detail *dst, const struct es_detail *src,
		    char *err, size_t errlen)
{
	size_t i, cap = dst->nkeys;
	struct es_key *same;

	if (!dst->vendor[0]) {
		memcpy(dst->vendor, src->vendor, sizeof(dst->vendor));
		dst->tsc_khz = src->tsc_khz;
		dst->since_ns = src->since_ns;
		dst->max_keys = src->max_keys;
	}
	dst->since_ns = dst->since_ns < src->since_ns ? src->since_ns : dst->since_ns;
	for (i = 0; i < src->nkeys; i++) {
		const struct es_key *k = &src->keys[i];

		same = find_key(dst->keys, dst->nkeys, k);
		if (same) {
			same->count += k->count;
			same->cycles += k->cycles;
		} else if (add_key(dst, k, &cap)) {
			snprintf(err, errlen, "more than %d sub-reasons, or out of memory",
				 ES_MAX_KEYS);
			return -1;
		}
	}
	return 0;
}

/* es_guest_mode() for the sub-reasons, with the same rules. */
void es_detail_guest_mode(struct es_detail *d, enum es_mode mode)
{
	const size_t plen = sizeof(ES_L2_PREFIX) - 1;
	struct es_key *k, *same;
	size_t i, n = 0;

	if (mode == ES_MODE_SPLIT)
		return;
	for (i = 0; i < d->nkeys; i++) {
		k = &d->keys[i];
		if ((mode == ES_MODE_L1 && es_name_is_l2(k->name)) ||
		    (mode == ES_MODE_L2 && !es_name_is_l2(k->name)))
			continue;
		if (mode == ES_MODE_ALL && es_name_is_l2(k->name))
			memmove(k->name, k->name + plen, strlen(k->name) - plen + 1);
		same = find_key(d->keys, n, k);
		if (same) {
			same->count += k->count;
			same->cycles += k->cycles;
		} else {
			d->keys[n++] = *k;
		}
	}
	d->nkeys = n;
}
