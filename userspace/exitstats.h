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
#define ES_HIST		32	/* log2 buckets: b counts fls64(cycles) == b */
#define ES_NAME_MAX	64
#define ES_MAX_ROWS	4096

struct es_row {
	bool has_reason;	/* false for FAILED_ENTRY, OUT_OF_RANGE, TOTAL */
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

/* The row of @st for the same exit reason as @row, or NULL. */
struct es_row *es_find(const struct es_stats *st, const struct es_row *row);

/* Add @src's rows into @dst by exit reason (vCPUs or VMs summed). */
int es_merge(struct es_stats *dst, const struct es_stats *src);

/* Recompute avg and TOTAL from the rows. */
void es_finish(struct es_stats *st);

/* Upper bound, in cycles, of the bucket holding quantile @q (0..1). */
uint64_t es_quantile(const struct es_row *row, double q);

#endif
