// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer harness for the exit_stats parser: any input must either parse
 * into rows that keep the format's invariants or fail with a message.
 */
#include <assert.h>
#include <string.h>

#include "../exitstats.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct es_stats st, sum;
	char err[256];
	size_t i;

	if (es_parse((const char *)data, size, &st, err, sizeof(err))) {
		assert(err[0]);
		return 0;
	}
	for (i = 0; i < st.nrows; i++) {
		const struct es_row *r = &st.rows[i];
		unsigned long long total = 0;
		int b;

		for (b = 0; b < ES_HIST; b++)
			total += r->hist[b];
		assert(total == r->count);
		assert(!r->count || (r->min <= r->avg && r->avg <= r->max));
		assert(es_quantile(r, 0.99) <= r->max || !r->count);
		assert(strlen(r->name) < ES_NAME_MAX);
	}
	memset(&sum, 0, sizeof(sum));
	assert(!es_merge(&sum, &st));
	es_finish(&sum);
	es_free(&sum);
	es_free(&st);
	return 0;
}
