/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Parser for the kvm exit_stats debugfs format, version 1
 * (Documentation/virt/kvm/x86/exit-stats.rst).
 */
#ifndef KVM_EXITSTAT_EXITSTATS_H
#define KVM_EXITSTAT_EXITSTATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ES_VERSION	1
/*
 * log2 buckets: b > 0 counts exits with fls64(cycles) == b.  Bucket 0 counts
 * the exits whose cycles could not be measured (the TSC did not advance or
 * went backwards; 0-cycle exits on the first kernels): they are in count
 * but not in cycles, min, avg or max.
 */
#define ES_HIST		32
#define ES_NAME_MAX	64
#define ES_MAX_ROWS	4096

struct es_row {
	bool has_reason;	/* false for the '-' rows: FAILED_ENTRY, TOTAL... */
	uint32_t reason;
	char name[ES_NAME_MAX];
	uint64_t count, cycles, min, avg, max;
	uint64_t hist[ES_HIST];
};

struct es_stats {
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

/* Exits of @row with a measured time: what cycles, min and max cover. */
static inline uint64_t es_measured(const struct es_row *row)
{
	return row->count > row->hist[0] ? row->count - row->hist[0] : 0;
}

/* The row of @st for the same exit reason as @row, or NULL. */
struct es_row *es_find(const struct es_stats *st, const struct es_row *row);

/* Add @src's rows into @dst by exit reason (vCPUs or VMs summed). */
int es_merge(struct es_stats *dst, const struct es_stats *src);

/* Recompute avg (cycles / measured exits) and TOTAL from the rows. */
void es_finish(struct es_stats *st);

/*
 * Upper bound, in cycles, of the bucket holding quantile @q (0..1) of the
 * measured exits; 0 if there are none.
 */
uint64_t es_quantile(const struct es_row *row, double q);

#endif
