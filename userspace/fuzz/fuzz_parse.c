// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer harness for the exit_stats and exit_stats_detail parsers: any
 * input must either parse into rows that keep the format's invariants or
 * fail with a message.
 */
#include <assert.h>
#include <string.h>

#include "../exitstats.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* Sum of the counts of @d's sub-reasons. */
static unsigned long long detail_count(const struct es_detail *d)
{
	unsigned long long n = 0;
	size_t i;

	for (i = 0; i < d->nkeys; i++)
		n += d->keys[i].count;
	return n;
}

/* The same input as an exit_stats_detail file. */
static void fuzz_detail(const unsigned char *data, size_t size)
{
	struct es_detail d, sum;
	unsigned long long all, l1, l2;
	enum es_mode mode;
	char err[256];
	size_t i;

	if (es_parse_detail((const char *)data, size, &d, err, sizeof(err))) {
		assert(err[0]);
		return;
	}
	for (i = 0; i < d.nkeys; i++) {
		assert(d.keys[i].count);
		assert(strlen(d.keys[i].name) < ES_NAME_MAX);
		assert(strlen(d.keys[i].key) < ES_NAME_MAX);
	}
	/* A file has no duplicates: merging it into nothing keeps it. */
	memset(&sum, 0, sizeof(sum));
	assert(!es_detail_merge(&sum, &d, err, sizeof(err)));
	assert(sum.nkeys == d.nkeys && detail_count(&sum) == detail_count(&d));
	es_detail_free(&sum);
	/* all = l1 + l2 in exits; split keeps the file. */
	all = l1 = l2 = 0;
	for (mode = ES_MODE_SPLIT; mode <= ES_MODE_ALL; mode++) {
		memset(&sum, 0, sizeof(sum));
		assert(!es_detail_merge(&sum, &d, err, sizeof(err)));
		es_detail_guest_mode(&sum, mode);
		if (mode == ES_MODE_SPLIT)
			assert(sum.nkeys == d.nkeys);
		*(mode == ES_MODE_L1 ? &l1 : mode == ES_MODE_L2 ? &l2 : &all) =
			detail_count(&sum);
		es_detail_free(&sum);
	}
	assert(all == l1 + l2 && all == detail_count(&d));
	es_detail_free(&d);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct es_stats st, sum;
	char err[256];
	enum es_mode mode;
	unsigned int b;
	size_t i;

	fuzz_detail(data, size);
	if (es_parse((const char *)data, size, &st, err, sizeof(err))) {
		assert(err[0]);
		return 0;
	}
	for (i = 0; i < st.nrows; i++) {
		const struct es_row *r = &st.rows[i];
		unsigned long long total = 0;
		uint64_t p50, p99;

		for (b = 0; b < ES_HIST_MAX; b++) {
			assert(b < st.layout.nbuckets || !r->hist[b]);
			total += r->hist[b];
		}
		assert(total == r->count);
		assert(!r->count || (r->min <= r->avg && r->avg <= r->max));
		assert(r->fastpath <= r->count);
		p50 = es_quantile(&st.layout, r, 0.5);
		p99 = es_quantile(&st.layout, r, 0.99);
		if (es_measured(r))
			assert(r->min <= p50 && p50 <= p99 && p99 <= r->max);
		else
			assert(!p50 && !p99);
		assert(strlen(r->name) < ES_NAME_MAX);
	}
	/* The buckets of the layout follow each other without a gap. */
	for (b = 2; b < st.layout.nbuckets; b++) {
		uint64_t lo, hi, plo, phi;

		es_bucket_bounds(&st.layout, b - 1, &plo, &phi);
		es_bucket_bounds(&st.layout, b, &lo, &hi);
		assert(plo < phi && phi == lo && lo < hi);
	}
	memset(&sum, 0, sizeof(sum));
	assert(!es_merge(&sum, &st, err, sizeof(err)));
	assert(es_layout_equal(&sum.layout, &st.layout));
	es_finish(&sum);
	es_free(&sum);
	/* Every guest mode keeps TOTAL the sum of its rows; all keeps it all. */
	for (mode = ES_MODE_L1; mode <= ES_MODE_ALL; mode++) {
		uint64_t before, total = 0;

		memset(&sum, 0, sizeof(sum));
		assert(!es_merge(&sum, &st, err, sizeof(err)));
		es_finish(&sum);
		before = sum.total.count;
		es_guest_mode(&sum, mode);
		for (i = 0; i < sum.nrows; i++) {
			assert(mode == ES_MODE_ALL || mode == ES_MODE_SPLIT ||
			       es_is_l2(&sum.rows[i]) == (mode == ES_MODE_L2));
			total += sum.rows[i].count;
		}
		assert(sum.total.count == total);
		if (mode == ES_MODE_ALL)
			assert(total == before);
		es_free(&sum);
	}
	es_free(&st);
	return 0;
}
