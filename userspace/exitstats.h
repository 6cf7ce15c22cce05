/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Parser for the kvm exit_stats debugfs format, versions 1 to 3
 * (Documentation/virt/kvm/x86/exit-stats.rst).
 */
#ifndef KVM_EXITSTAT_EXITSTATS_H
#define KVM_EXITSTAT_EXITSTATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The format versions this parser reads. */
#define ES_VERSION_MIN	1
#define ES_VERSION_MAX	3
/*
 * Histogram buckets.  In both versions bucket 0 counts the exits whose
 * cycles could not be measured (the TSC did not advance or went backwards;
 * 0-cycle exits on the first kernels): they are in count but not in
 * cycles, min, avg or max.  The measured buckets:
 *
 * version 1: 32 log2 buckets, b > 0 counts exits with fls64(cycles) == b,
 *	i.e. [2^(b-1), 2^b); bucket 31 also holds everything longer.
 * version 2: the header gives N (hist_buckets), M (hist_min_shift) and S
 *	(hist_sub_shift).  Bucket 1 is [1, 2^M); bucket b, 2 <= b < N - 1,
 *	splits a power of two into 2^S buckets of equal width: with
 *	j = b - 2, e = M + (j >> S), k = j & (2^S - 1), it is
 *	[2^e + k * 2^(e-S), 2^e + (k+1) * 2^(e-S)); bucket N - 1 is
 *	[2^(M + (N-3) / 2^S), infinity).
 *
 * es_bucket_bounds() gives the bounds of a bucket for either version.
 * Version 3 is version 2 plus a fastpath field in every row.
 */
#define ES_V1_BUCKETS	32
#define ES_HIST_MAX	256	/* the most buckets a file may have */
#define ES_NAME_MAX	64
#define ES_MAX_ROWS	4096
/* The upper bound of the last bucket: it is open. */
#define ES_INF		UINT64_MAX

struct es_layout {
	unsigned int version;	/* 1 to 3; 0: none yet (see es_merge()) */
	unsigned int nbuckets;	/* N: 32 in version 1 */
	unsigned int min_shift;	/* M (version 2) */
	unsigned int sub_shift;	/* S (version 2) */
};

struct es_row {
	bool has_reason;	/* false for the '-' rows: FAILED_ENTRY, TOTAL... */
	uint32_t reason;
	char name[ES_NAME_MAX];
	uint64_t count, cycles, min, avg, max;
	uint64_t fastpath;	/* exits handled in KVM's fastpath (version 3) */
	uint64_t hist[ES_HIST_MAX];	/* layout.nbuckets of them are used */
};

struct es_stats {
	struct es_layout layout;
	char vendor[4];		/* "VMX" or "SVM" */
	uint64_t tsc_khz;
	uint64_t since_ns;
	size_t nrows;
	struct es_row *rows;	/* without TOTAL */
	struct es_row total;
};

/*
 * Parse @len bytes.  Returns 0, or -1 with a message naming the line in
 * @err.  On success free the result with es_free().
 */
int es_parse(const char *buf, size_t len, struct es_stats *st,
	     char *err, size_t errlen);
void es_free(struct es_stats *st);

/*
 * Check a version 2 layout: 0, or -1 with the reason in @err.  es_parse()
 * only returns valid layouts.
 */
int es_layout_check(const struct es_layout *l, char *err, size_t errlen);

/* The layout as text, e.g. "version 2 (99 buckets, hist_min_shift 6, hist_sub_shift 2)". */
void es_layout_str(const struct es_layout *l, char *buf, size_t len);

static inline bool es_layout_equal(const struct es_layout *a,
				   const struct es_layout *b)
{
	return a->version == b->version && a->nbuckets == b->nbuckets &&
	       a->min_shift == b->min_shift && a->sub_shift == b->sub_shift;
}

/*
 * The cycles bucket @b of @l holds: [*lo, *hi), *hi == ES_INF for the last
 * (open) bucket; both 0 for bucket 0, whose exits have no time.
 */
void es_bucket_bounds(const struct es_layout *l, unsigned int b,
		      uint64_t *lo, uint64_t *hi);

/* Exits of @row with a measured time: what cycles, min and max cover. */
static inline uint64_t es_measured(const struct es_row *row)
{
	return row->count > row->hist[0] ? row->count - row->hist[0] : 0;
}

/* The row of @st for the same exit reason as @row, or NULL. */
struct es_row *es_find(const struct es_stats *st, const struct es_row *row);

/*
 * Add @src's rows into @dst by exit reason (vCPUs or VMs summed).  A @dst
 * without a layout (zeroed) takes @src's.  Returns -1 with a message in @err
 * if the histogram layouts differ or memory runs out.
 */
int es_merge(struct es_stats *dst, const struct es_stats *src,
	     char *err, size_t errlen);

/* Recompute avg (cycles / measured exits) and TOTAL from the rows. */
void es_finish(struct es_stats *st);

/*
 * Exits taken while a vCPU ran a nested guest have rows of their own, named
 * ES_L2_PREFIX and the reason's name (format version 3).
 */
#define ES_L2_PREFIX	"L2:"

enum es_mode {
	ES_MODE_SPLIT,	/* the rows as the file has them */
	ES_MODE_L1,	/* only exits of L1 */
	ES_MODE_L2,	/* only exits of L2 */
	ES_MODE_ALL,	/* each L2 row added to its reason's L1 row */
};

/* An L2 row: ES_L2_PREFIX and a name. */
static inline bool es_name_is_l2(const char *name)
{
	return !strncmp(name, ES_L2_PREFIX, sizeof(ES_L2_PREFIX) - 1) &&
	       name[sizeof(ES_L2_PREFIX) - 1];
}

static inline bool es_is_l2(const struct es_row *row)
{
	return es_name_is_l2(row->name);
}

/* Apply @mode to @st's rows; TOTAL is recomputed unless ES_MODE_SPLIT. */
void es_guest_mode(struct es_stats *st, enum es_mode mode);

/*
 * Estimate of quantile @q (0..1) of the measured exits of @row, in cycles,
 * the way Prometheus' histogram_quantile() does it: the bucket where the
 * cumulative count (bucket 0 left out) reaches q * measured, then linear
 * interpolation inside it, with the bucket's bounds narrowed to [min, max]
 * (which also bounds the open last bucket); the result is kept within
 * [min, max].  Exact for a row whose exits all took the same time; with
 * version 2's buckets (4 per power of two) within about 10 % for smooth
 * distributions.  The estimate always lies in the bucket of the true
 * quantile: for a distribution narrower than a bucket, or at the quantile
 * where two modes meet, it can be off by up to a bucket's width (25 %).
 * 0 if no exit was measured.  tests/test_percentiles.py measures all this.
 */
uint64_t es_quantile(const struct es_layout *l, const struct es_row *row,
		     double q);

/*
 * The sub-reasons of the exits (exit_stats_detail, format version 1): for
 * the row of reason @reason and @name, the exits and cycles of sub-reason
 * @key ("rdmsr:0x1a0", "out:0x80:1", ...; "other": the row's exits without
 * one).
 */
#define ES_DETAIL_VERSION	1
#define ES_MAX_KEYS		4096

struct es_key {
	bool has_reason;
	uint32_t reason;
	char name[ES_NAME_MAX];
	char key[ES_NAME_MAX];
	uint64_t count, cycles;
};

struct es_detail {
	char vendor[4];
	uint64_t tsc_khz;
	uint64_t since_ns;
	uint64_t max_keys;
	size_t nkeys;
	struct es_key *keys;	/* in the file's order until merged */
};

int es_parse_detail(const char *buf, size_t len, struct es_detail *d,
		    char *err, size_t errlen);
void es_detail_free(struct es_detail *d);
int es_detail_merge(struct es_detail *dst, const struct es_detail *src,
		    char *err, size_t errlen);
void es_detail_guest_mode(struct es_detail *d, enum es_mode mode);
/* Is @k a sub-reason of @row?  (Same reason and name.) */
static inline bool es_key_of(const struct es_key *k, const struct es_row *row)
{
	return k->has_reason == row->has_reason && k->reason == row->reason &&
	       !strcmp(k->name, row->name);
}

#endif
