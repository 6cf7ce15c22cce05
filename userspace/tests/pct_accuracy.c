// SPDX-License-Identifier: GPL-2.0-only
/*
 * Percentile accuracy of kvm-exitstat on the kernel's own histogram
 * (tests/test_percentiles.py builds and runs this).
 *
 * kernel_hist.h, which the test writes, holds the KVM_EXIT_STATS_HIST_*
 * macros and kvm_exit_stats_hist_bucket() as they are in the kernel tree's
 * arch/x86/kvm/exit_stats.h, after a few lines that stand in for the kernel
 * headers.  This program
 *
 *  1. checks that the kernel's layout is one the viewer accepts and that
 *     the kernel puts the ends of each bucket that es_bucket_bounds() gives
 *     into that bucket;
 *  2. reads cycle counts (decimal, one per line) on stdin, accounts them as
 *     the kernel does (count, cycles, min, max, the histogram; and the log2
 *     histogram of format version 1 for comparison), and prints
 *
 *	layout N M S
 *	row COUNT CYCLES MIN MAX
 *	v2 HIST P50 P90 P99
 *	v1 HIST P50 P90 P99
 *
 *     HIST as b:n,... and the percentiles from es_quantile().
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernel_hist.h"
#include "exitstats.h"

#define N	KVM_EXIT_STATS_HIST_BUCKETS

/* Bucket of an exit of @cycles > 0, as the kernel's exit path picks it. */
static unsigned int kernel_bucket(uint64_t cycles)
{
	if (cycles < (1ULL << KVM_EXIT_STATS_HIST_MIN_SHIFT))
		return 1;
	if (cycles >= (1ULL << KVM_EXIT_STATS_HIST_MAX_SHIFT))
		return N - 1;
	return kvm_exit_stats_hist_bucket(cycles);
}

/* Format version 1: fls64(cycles), the last bucket saturates. */
static unsigned int v1_bucket(uint64_t cycles)
{
	unsigned int b = 64 - __builtin_clzll(cycles);

	return b < ES_V1_BUCKETS - 1 ? b : ES_V1_BUCKETS - 1;
}

static int check_layout(const struct es_layout *l)
{
	uint64_t lo, hi, probe[4];
	unsigned int b, i, got;
	char err[160];
	int bad = 0;

	if (es_layout_check(l, err, sizeof(err))) {
		fprintf(stderr, "the kernel's histogram layout is not one kvm-exitstat reads: %s\n",
			err);
		return 1;
	}
	for (b = 1; b < l->nbuckets; b++) {
		es_bucket_bounds(l, b, &lo, &hi);
		probe[0] = lo;
		probe[1] = lo + 1;
		probe[2] = hi == ES_INF ? lo + (lo >> 1) : hi - 1;
		probe[3] = hi == ES_INF ? UINT64_MAX : lo + (hi - lo) / 2;
		for (i = 0; i < 4; i++) {
			if (hi != ES_INF && probe[i] >= hi)
				continue;	/* a bucket of one cycle */
			got = kernel_bucket(probe[i]);
			if (got != b) {
				fprintf(stderr, "%" PRIu64 " cycles: the kernel's bucket is %u, kvm-exitstat's bounds put it in bucket %u [%" PRIu64 ", %" PRIu64 ")\n",
					probe[i], got, b, lo, hi);
				bad = 1;
			}
		}
	}
	return bad;
}

static void print_hist(const char *tag, const struct es_layout *l,
		       const struct es_row *r)
{
	const char *sep = "";
	unsigned int b;

	printf("%s ", tag);
	for (b = 0; b < l->nbuckets; b++) {
		if (r->hist[b]) {
			printf("%s%u:%" PRIu64, sep, b, r->hist[b]);
			sep = ",";
		}
	}
	printf(" %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", es_quantile(l, r, 0.5),
	       es_quantile(l, r, 0.9), es_quantile(l, r, 0.99));
}

int main(void)
{
	const struct es_layout v2 = { 2, N, KVM_EXIT_STATS_HIST_MIN_SHIFT,
				      KVM_EXIT_STATS_HIST_SUB_SHIFT };
	const struct es_layout v1 = { 1, ES_V1_BUCKETS, 1, 0 };
	static struct es_row r2, r1;
	char line[64];

	if (N > ES_HIST_MAX) {
		fprintf(stderr, "the kernel has %d buckets, kvm-exitstat reads at most %d\n",
			N, ES_HIST_MAX);
		return 1;
	}
	if (check_layout(&v2))
		return 1;
	r2.min = UINT64_MAX;
	while (fgets(line, sizeof(line), stdin)) {
		char *end;
		uint64_t c = strtoull(line, &end, 10);

		if (end == line || (*end && *end != '\n') || !c) {
			fprintf(stderr, "bad sample '%s'\n", line);
			return 1;
		}
		/* What the kernel keeps: no count of its own, see exit_stats.h. */
		r2.cycles += c;
		if (c < r2.min)
			r2.min = c;
		if (c > r2.max)
			r2.max = c;
		r2.hist[kernel_bucket(c)]++;
		r1.hist[v1_bucket(c)]++;
		r2.count++;
	}
	if (!r2.count) {
		fprintf(stderr, "no samples\n");
		return 1;
	}
	r2.avg = r2.cycles / r2.count;
	r1.count = r2.count;
	r1.cycles = r2.cycles;
	r1.min = r2.min;
	r1.max = r2.max;
	r1.avg = r2.avg;
	printf("layout %u %u %u\n", v2.nbuckets, v2.min_shift, v2.sub_shift);
	printf("row %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
	       r2.count, r2.cycles, r2.min, r2.max);
	print_hist("v2", &v2, &r2);
	print_hist("v1", &v1, &r1);
	return 0;
}
