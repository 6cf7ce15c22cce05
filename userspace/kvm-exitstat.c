// SPDX-License-Identifier: GPL-2.0-only
/*
 * kvm-exitstat - show KVM's per-reason VM-Exit statistics as a table.
 *
 * Reads /sys/kernel/debug/kvm/exit_stats (or a VM's, a vCPU's, or a saved
 * copy), and prints it with libsmartcols as a table or JSON, or as CSV or
 * Prometheus text.  With --interval it prints the change between reads.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libsmartcols.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "exitstats.h"

#ifndef VERSION
#define VERSION "0.1.0"
#endif

#define DEBUGFS		"/sys/kernel/debug"
#define KVM_DIR		DEBUGFS "/kvm"
#define STATS		"exit_stats"
#define RESET_SUFFIX	"_reset"	/* exit_stats_reset: write-only, v2 */
#define LOCKDOWN	"/sys/kernel/security/lockdown"
#define DEBUGFS_MAGIC	0x64626720
#define MAX_FILE_SIZE	(16 << 20)

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

enum {
	COL_REASON, COL_NR, COL_COUNT, COL_COUNT_PCT, COL_FASTPATH, COL_RATE,
	COL_TOTAL, COL_TIME_PCT, COL_MIN, COL_AVG, COL_MAX, COL_P50, COL_P90,
	COL_P99, NCOLS
};

enum kind { K_TEXT, K_COUNT, K_PCT, K_RATE, K_TIME };

struct colinfo {
	const char *name;
	double whint;
	int flags;
	enum kind kind;
	const char *help;
};

static const struct colinfo cols[NCOLS] = {
	[COL_REASON]	= { "REASON", 0.2, 0, K_TEXT, "exit reason name" },
	[COL_NR]	= { "NR", 4, SCOLS_FL_RIGHT, K_TEXT, "exit reason number (VMX basic reason, SVM exit code)" },
	[COL_COUNT]	= { "COUNT", 6, SCOLS_FL_RIGHT, K_COUNT, "number of exits" },
	[COL_COUNT_PCT]	= { "COUNT%", 6, SCOLS_FL_RIGHT, K_PCT, "share of all exits" },
	[COL_FASTPATH]	= { "FASTPATH", 6, SCOLS_FL_RIGHT, K_COUNT, "exits handled in KVM's fastpath (format version 3)" },
	[COL_RATE]	= { "RATE", 6, SCOLS_FL_RIGHT, K_RATE, "exits per second (--interval)" },
	[COL_TOTAL]	= { "TOTAL", 8, SCOLS_FL_RIGHT, K_TIME, "time spent handling these exits" },
	[COL_TIME_PCT]	= { "TIME%", 6, SCOLS_FL_RIGHT, K_PCT, "share of all handling time" },
	[COL_MIN]	= { "MIN", 6, SCOLS_FL_RIGHT, K_TIME, "shortest handling time" },
	[COL_AVG]	= { "AVG", 6, SCOLS_FL_RIGHT, K_TIME, "average handling time (of the measured exits)" },
	[COL_MAX]	= { "MAX", 6, SCOLS_FL_RIGHT, K_TIME, "longest handling time" },
	[COL_P50]	= { "P50", 6, SCOLS_FL_RIGHT, K_TIME, "median, estimated from the histogram (see below)" },
	[COL_P90]	= { "P90", 6, SCOLS_FL_RIGHT, K_TIME, "90th percentile, estimated like P50" },
	[COL_P99]	= { "P99", 6, SCOLS_FL_RIGHT, K_TIME, "99th percentile, estimated like P50" },
};

/* FASTPATH is left out for files without it, unless asked for. */
static const int default_cols[] = {
	COL_REASON, COL_COUNT, COL_COUNT_PCT, COL_FASTPATH, COL_TOTAL, COL_TIME_PCT,
	COL_MIN, COL_AVG, COL_MAX, COL_P50, COL_P99,
};

static const int live_cols[] = {
	COL_REASON, COL_COUNT, COL_RATE, COL_FASTPATH, COL_TOTAL, COL_TIME_PCT,
	COL_AVG, COL_P50, COL_P99,
};

enum sortkey { S_COUNT, S_TOTAL, S_AVG, S_MIN, S_MAX, S_P99, S_NAME, S_REASON };

static const char *const sortkeys[] = {
	[S_COUNT] = "count", [S_TOTAL] = "total", [S_AVG] = "avg",
	[S_MIN] = "min", [S_MAX] = "max", [S_P99] = "p99",
	[S_NAME] = "name", [S_REASON] = "reason",
};

enum format { F_TABLE, F_JSON, F_CSV, F_PROM };
enum unit { U_CYCLES, U_NS, U_US, U_MS, U_AUTO };

static const char *const unit_names[] = { "cycles", "ns", "us", "ms" };

struct opts {
	const char *file;
	const char *vm;
	long pid;
	long vcpu;
	int cols[NCOLS * 2];
	size_t ncols;
	bool fastpath_asked;	/* FASTPATH named in --output */
	enum sortkey sort;
	bool reverse, sort_set;
	bool skip_zero, noheadings, raw, reset;
	long top;
	enum format format;
	enum unit unit;
	double interval;
	long count;
	enum es_mode mode;
	bool detail;		/* --detail: the sub-reasons as a tree */
	const char *detail_file;
	enum per { PER_NONE, PER_VM, PER_VCPU } per;	/* --per */
	bool csv_meta;		/* --csv-meta: '#' lines with the metadata */
	bool hist;		/* --hist: latency distributions as bar charts */
	char **hist_reasons;	/* --hist's REASON arguments, NULL-terminated */
};

static const char *prog = "kvm-exitstat";
static volatile sig_atomic_t stop;
/* --sysroot: where /sys and /proc are ("" for /), and KVM's debugfs in it. */
static const char *sysroot = "";
static char kvm_dir[PATH_MAX] = KVM_DIR;

static void __attribute__((format(printf, 2, 3), noreturn))
die(int status, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

static void usage(FILE *out)
{
	size_t i;

	fprintf(out,
		"Usage:\n"
		" %s [options]\n"
		" %s --hist [options] [REASON...]\n\n"
		"Show KVM's per-reason VM-Exit statistics (debugfs exit_stats).\n\n"
		"Scope (default: every VM of the host, destroyed ones included):\n"
		" -p, --pid PID          all VMs of a process\n"
		"     --vm PID-FD        one VM (a directory under " KVM_DIR ")\n"
		"     --vcpu N           one vCPU of --vm\n"
		" -f, --file FILE        read a saved exit_stats file ('-' for stdin)\n\n"
		"Output:\n"
		" -o, --output LIST      columns to show ('+LIST' adds to the default)\n"
		" -s, --sort KEY         sort by KEY ('-KEY' reverses)\n"
		" -r, --reverse          reverse the sort order\n"
		" -t, --top N            show the first N rows only\n"
		" -z, --skip-zero        hide reasons without exits\n"
		"     --guest-mode MODE  exits of nested guests: split (rows L2:NAME, the\n"
		"                        default), l1, l2, or all (added to L1's rows)\n"
		"     --detail           each reason's sub-reasons (which MSR, port, fault...)\n"
		"                        under it, from exit_stats_detail (table and --json)\n"
		"     --detail-file FILE with --file: the saved exit_stats_detail to use\n"
		"     --hist             each reason's latency distribution as a bar chart\n"
		"                        (REASONs: names or numbers; default: all shown)\n"
		"     --per vm|vcpu      a row per VM or per vCPU of the scope: exits, time,\n"
		"                        top reason, the process's name (not with --file,\n"
		"                        --detail, --hist, --output or --reset)\n"
		" -n, --noheadings       don't print headings\n"
		" -u, --unit UNIT        time unit: cycles, ns, us or ms (default: tables\n"
		"                        pick one per value, machine formats use ns)\n"
		"     --raw              exact integers: cycles, no rounding\n"
		" -J, --json             JSON output\n"
		"     --csv              CSV output\n"
		"     --csv-meta         with --csv: '# key value' lines first (format\n"
		"                        version, vendor, tsc_khz, since_reset_ns, scope, unit)\n"
		"     --prometheus       Prometheus text exposition format\n\n"
		"Live:\n"
		" -i, --interval SEC     print the change every SEC seconds\n"
		" -c, --count N          stop after N intervals\n\n"
		"Other:\n"
		"     --sysroot DIR      read DIR/sys/kernel/debug/kvm and DIR/proc instead\n"
		"     --reset            reset the counters of the scope (root; refused\n"
		"                        under kernel lockdown)\n"
		" -h, --help             display this help\n"
		" -V, --version          display version\n\n"
		"Available output columns:\n", prog, prog);
	for (i = 0; i < NCOLS; i++)
		fprintf(out, " %8s  %s\n", cols[i].name, cols[i].help);
	fprintf(out, "\nP50, P90 and P99 are estimates: interpolated linearly within the histogram\n"
		"bucket that holds them, clamped to [MIN, MAX].  Buckets: one per power of\n"
		"two in format version 1, four per power of two in versions 2 and 3.\n");
	fprintf(out, "\nSort keys:");
	for (i = 0; i < sizeof(sortkeys) / sizeof(sortkeys[0]); i++)
		fprintf(out, " %s", sortkeys[i]);
	fprintf(out, "\n\nFor more details see kvm-exitstat(1).\n");
	exit(out == stdout ? EXIT_OK : EXIT_USAGE);
}

static long parse_long(const char *s, const char *what, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		die(EXIT_USAGE, "invalid %s '%s' (expected %ld..%ld)", what, s,
		    min, max);
	return v;
}

static int column_id(const char *name, size_t len)
{
	int i;

	for (i = 0; i < NCOLS; i++)
		if (strlen(cols[i].name) == len &&
		    !strncasecmp(cols[i].name, name, len))
			return i;
	return -1;
}

static void parse_columns(struct opts *o, const char *list)
{
	const char *p = list;

	if (*p == '+')
		p++;
	else
		o->ncols = 0;
	if (!*p)
		die(EXIT_USAGE, "empty column list");
	while (*p) {
		size_t len = strcspn(p, ",");
		int id = column_id(p, len);

		if (id < 0)
			die(EXIT_USAGE, "unknown column '%.*s' (see --help)", (int)len, p);
		if (o->ncols == sizeof(o->cols) / sizeof(o->cols[0]))
			die(EXIT_USAGE, "too many columns");
		o->cols[o->ncols++] = id;
		o->fastpath_asked |= id == COL_FASTPATH;
		p += len;
		if (*p == ',' && !*++p)
			die(EXIT_USAGE, "trailing ',' in column list");
	}
}

static enum es_mode parse_mode(const char *arg)
{
	static const char *const modes[] = {
		[ES_MODE_SPLIT] = "split", [ES_MODE_L1] = "l1",
		[ES_MODE_L2] = "l2", [ES_MODE_ALL] = "all",
	};
	size_t i;

	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(arg, modes[i]))
			return i;
	die(EXIT_USAGE, "unknown guest mode '%s' (split, l1, l2 or all)", arg);
}

static void parse_sort(struct opts *o, const char *key)
{
	size_t i;

	if (*key == '-') {
		o->reverse = !o->reverse;
		key++;
	}
	for (i = 0; i < sizeof(sortkeys) / sizeof(sortkeys[0]); i++) {
		if (!strcasecmp(key, sortkeys[i])) {
			o->sort = i;
			o->sort_set = true;
			return;
		}
	}
	die(EXIT_USAGE, "unknown sort key '%s' (see --help)", key);
}

/* ----- input ----- */

static bool is_debugfs_mounted(void)
{
	struct statfs sfs;

	return !statfs(DEBUGFS, &sfs) && (unsigned long)sfs.f_type == DEBUGFS_MAGIC;
}

/*
 * The active lockdown mode as LOCKDOWN shows it, e.g. "[integrity]", into
 * @buf; false if it cannot be read.
 */
static bool lockdown_mode(char *buf, size_t len)
{
	FILE *f = fopen(LOCKDOWN, "r");
	char line[128], *l, *r;
	bool ok = false;

	if (!f)
		return false;
	if (fgets(line, sizeof(line), f) && (l = strchr(line, '[')) &&
	    (r = strchr(l, ']'))) {
		snprintf(buf, len, "%.*s", (int)(r - l + 1), l);
		ok = true;
	}
	fclose(f);
	return ok;
}

/*
 * EPERM from a debugfs file, whatever root's permissions: kernel lockdown,
 * which refuses the debugfs files that can be written.  @what says what
 * failed ("cannot reset " or ""), @why what it means and what to do.
 */
static void __attribute__((noreturn))
die_eperm(const char *what, const char *path, const char *why)
{
	char mode[64];

	if (!lockdown_mode(mode, sizeof(mode)))
		die(EXIT_RUNTIME, "%s%s: %s: the kernel is probably locked down (cannot read " LOCKDOWN "); %s",
		    what, path, strerror(EPERM), why);
	if (!strcmp(mode, "[none]"))
		die(EXIT_RUNTIME, "%s%s: %s (the kernel is not locked down: " LOCKDOWN " shows [none])",
		    what, path, strerror(EPERM));
	die(EXIT_RUNTIME, "%s%s: %s: the kernel is locked down (%s in " LOCKDOWN "); %s",
	    what, path, strerror(EPERM), mode, why);
}

/* Does @dir/@name exist? */
static bool fexists(const char *dir, const char *name)
{
	struct stat st;
	char *path;
	bool r;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		die(EXIT_RUNTIME, "out of memory");
	r = !stat(path, &st);
	free(path);
	return r;
}

/* Explain why a debugfs path could not be opened, and how to fix it. */
static void __attribute__((noreturn)) die_open(const char *path, int err)
{
	struct stat st;

	if (err == EACCES)
		die(EXIT_RUNTIME, "%s: %s (exit_stats is for root only: run as root)",
		    path, strerror(err));
	/* Current exit_stats files are read-only: lockdown lets them be read. */
	if (err == EPERM)
		die_eperm("", path,
			  "this may be a kernel with the first version of exit_stats (mode 0600, no exit_stats_reset), whose files lockdown refuses even for reading: boot without lockdown to read them");
	if (err == ENOENT && strncmp(path, kvm_dir, strlen(kvm_dir)) == 0) {
		if (!*sysroot && !is_debugfs_mounted())
			die(EXIT_RUNTIME, "%s: debugfs not mounted: mount -t debugfs none " DEBUGFS,
			    path);
		if (stat(kvm_dir, &st))
			die(EXIT_RUNTIME, "%s: KVM is not loaded (no %s)", path, kvm_dir);
		if (!fexists(kvm_dir, STATS))
			die(EXIT_RUNTIME, "%s: kernel without kvm exit_stats support (CONFIG_KVM_EXIT_STATS)",
			    path);
	}
	die(EXIT_RUNTIME, "%s: %s", path, strerror(err));
}

/*
 * The contents of @path ("-": stdin).  With @may_vanish, NULL if it does
 * not exist (any more): the file of a VM that is being destroyed, which
 * the kernel refuses with ENOENT while its directory is still there.
 */
static char *slurp_opt(const char *path, size_t *len, bool may_vanish)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
	size_t cap = 65536, n = 0;
	char *buf;

	if (!f && may_vanish && errno == ENOENT)
		return NULL;
	if (!f)
		die_open(path, errno);
	buf = malloc(cap);
	if (!buf)
		die(EXIT_RUNTIME, "out of memory");
	for (;;) {
		size_t r;

		if (n == cap) {
			if (cap >= MAX_FILE_SIZE)
				die(EXIT_RUNTIME, "%s: larger than %d MiB: not an exit_stats file",
				    path, MAX_FILE_SIZE >> 20);
			cap *= 2;
			buf = realloc(buf, cap);
			if (!buf)
				die(EXIT_RUNTIME, "out of memory");
		}
		r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f))
		die(EXIT_RUNTIME, "%s: %s", path, strerror(errno));
	if (f != stdin)
		fclose(f);
	*len = n;
	return buf;
}

static char *slurp(const char *path, size_t *len)
{
	return slurp_opt(path, len, false);
}

/* Parse @path into @st; with @may_vanish, false if it is gone. */
static bool read_one_opt(const char *path, struct es_stats *st, bool may_vanish)
{
	char err[256];
	size_t len;
	char *buf = slurp_opt(path, &len, may_vanish);

	if (!buf)
		return false;
	if (es_parse(buf, len, st, err, sizeof(err)))
		die(EXIT_RUNTIME, "%s: %s", strcmp(path, "-") ? path : "<stdin>", err);
	free(buf);
	return true;
}


/* Paths of the files that make up the scope; returns how many. */
static size_t scope_paths(const struct opts *o, char ***out)
{
	char **paths = NULL;
	size_t n = 0;

	if (o->pid >= 0) {
		char prefix[32];
		struct dirent *d;
		DIR *dir = opendir(kvm_dir);

		if (!dir)
			die_open(kvm_dir, errno);
		snprintf(prefix, sizeof(prefix), "%ld-", o->pid);
		while ((d = readdir(dir))) {
			if (strncmp(d->d_name, prefix, strlen(prefix)))
				continue;
			paths = realloc(paths, (n + 1) * sizeof(*paths));
			if (!paths || asprintf(&paths[n], "%s/%s/" STATS, kvm_dir, d->d_name) < 0)
				die(EXIT_RUNTIME, "out of memory");
			n++;
		}
		closedir(dir);
		if (!n)
			die(EXIT_RUNTIME, "process %ld has no VM (no %s/%s*)",
			    o->pid, kvm_dir, prefix);
		*out = paths;
		return n;
	}

	paths = malloc(sizeof(*paths));
	if (!paths)
		die(EXIT_RUNTIME, "out of memory");
	if (o->file)
		paths[0] = strdup(o->file);
	else if (o->vm && o->vcpu >= 0 &&
		 asprintf(&paths[0], "%s/%s/vcpu%ld/" STATS, kvm_dir, o->vm, o->vcpu) < 0)
		paths[0] = NULL;
	else if (o->vm && o->vcpu < 0 &&
		 asprintf(&paths[0], "%s/%s/" STATS, kvm_dir, o->vm) < 0)
		paths[0] = NULL;
	else if (!o->vm &&
		 asprintf(&paths[0], "%s/" STATS, kvm_dir) < 0)
		paths[0] = NULL;
	if (!paths[0])
		die(EXIT_RUNTIME, "out of memory");
	*out = paths;
	return 1;
}

/*
 * The sub-reasons of the scope: --detail-file, or the exit_stats_detail
 * file next to each exit_stats file of the scope.
 */
static void read_detail(const struct opts *o, const struct es_stats *st,
			struct es_detail *d)
{
	char **paths, *path, err[256];
	size_t i, n, len;
	struct es_detail more;
	char *buf;

	n = o->detail_file ? 1 : scope_paths(o, &paths);
	memset(d, 0, sizeof(*d));
	for (i = 0; i < n; i++) {
		if (o->detail_file)
			path = strdup(o->detail_file);
		else if (asprintf(&path, "%s_detail", paths[i]) < 0)
			path = NULL;
		if (!path)
			die(EXIT_RUNTIME, "out of memory");
		if (!o->detail_file && access(path, F_OK) && errno == ENOENT &&
		    !access(paths[i], F_OK))
			die(EXIT_RUNTIME, "%s: no such file: this kernel's exit_stats has no sub-reasons",
			    path);
		buf = slurp(path, &len);
		if (es_parse_detail(buf, len, &more, err, sizeof(err)))
			die(EXIT_RUNTIME, "%s: %s", strcmp(path, "-") ? path : "<stdin>", err);
		free(buf);
		if (strcmp(more.vendor, st->vendor) || more.tsc_khz != st->tsc_khz)
			die(EXIT_RUNTIME, "%s: vendor or tsc_khz differs from the exit_stats file",
			    path);
		if (es_detail_merge(d, &more, err, sizeof(err)))
			die(EXIT_RUNTIME, "%s: %s", path, err);
		es_detail_free(&more);
		free(path);
		if (!o->detail_file)
			free(paths[i]);
	}
	if (!o->detail_file)
		free(paths);
	es_detail_guest_mode(d, o->mode);
}

static void read_scope(const struct opts *o, struct es_stats *st)
{
	char **paths;
	size_t i, n = scope_paths(o, &paths), first;

	/* A process's VMs may go away between the listing and the reads. */
	for (first = 0; first < n; first++)
		if (read_one_opt(paths[first], st, o->pid >= 0))
			break;
	if (first == n)
		die(EXIT_RUNTIME, "process %ld has no VM (all went away)", o->pid);
	for (i = first + 1; i < n; i++) {
		struct es_stats more;
		char err[256];

		if (!read_one_opt(paths[i], &more, o->pid >= 0))
			continue;
		if (strcmp(more.vendor, st->vendor) || more.tsc_khz != st->tsc_khz)
			die(EXIT_RUNTIME, "%s: vendor or tsc_khz differs from %s",
			    paths[i], paths[first]);
		if (es_merge(st, &more, err, sizeof(err)))
			die(EXIT_RUNTIME, "%s: %s (%s)", paths[i], err, paths[first]);
		es_free(&more);
	}
	if (n > 1)
		es_finish(st);
	es_guest_mode(st, o->mode);
	for (i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
}

/* ----- values ----- */

struct view {
	const struct opts *o;
	struct es_stats *st;	/* print_stats() sorts and trims its rows */
	double seconds;		/* interval for RATE, 0 if none */
	const struct es_detail *detail;	/* --detail, else NULL */
};

static uint64_t quantile_col(const struct es_layout *l, const struct es_row *r,
			     int col)
{
	return es_quantile(l, r, col == COL_P50 ? 0.5 : col == COL_P90 ? 0.9 : 0.99);
}

static uint64_t time_value(const struct view *v, const struct es_row *r, int col)
{
	switch (col) {
	case COL_TOTAL: return r->cycles;
	case COL_MIN: return es_measured(r) ? r->min : 0;
	case COL_AVG: return r->avg;
	case COL_MAX: return r->max;
	default: return quantile_col(&v->st->layout, r, col);
	}
}

/* Cycles in the chosen unit, as text. */
static void fmt_time(const struct view *v, uint64_t cycles, char *buf, size_t len)
{
	double khz = (double)v->st->tsc_khz;

	switch (v->o->unit) {
	case U_CYCLES:
		snprintf(buf, len, "%llu", (unsigned long long)cycles);
		break;
	case U_NS:
		snprintf(buf, len, "%.0f", (double)cycles * 1e6 / khz);
		break;
	case U_US:
		snprintf(buf, len, "%.3f", (double)cycles * 1e3 / khz);
		break;
	case U_MS:
		snprintf(buf, len, "%.6f", (double)cycles / khz);
		break;
	case U_AUTO: {
		/* Tables: a readable unit per cell; machine formats: ns. */
		double ns = (double)cycles * 1e6 / khz;

		if (v->o->format != F_TABLE || ns < 1e3)
			snprintf(buf, len, v->o->format != F_TABLE ? "%.0f" : "%.0fns", ns);
		else if (ns < 1e6)
			snprintf(buf, len, "%.1fus", ns / 1e3);
		else if (ns < 1e9)
			snprintf(buf, len, "%.1fms", ns / 1e6);
		else
			snprintf(buf, len, "%.2fs", ns / 1e9);
		break;
	}
	}
}

static double pct(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

/* The text of one cell; false if the cell is empty (null in JSON). */
static bool cell(const struct view *v, const struct es_row *r, int col,
		 char *buf, size_t len)
{
	const struct es_row *t = &v->st->total;

	switch (col) {
	case COL_REASON:
		snprintf(buf, len, "%s", r->name);
		return true;
	case COL_NR:
		if (!r->has_reason)
			return false;
		snprintf(buf, len, "%u", r->reason);
		return true;
	case COL_COUNT:
		snprintf(buf, len, "%llu", (unsigned long long)r->count);
		return true;
	case COL_COUNT_PCT:
		snprintf(buf, len, "%.2f", pct(r->count, t->count));
		return true;
	case COL_FASTPATH:
		if (v->st->layout.version < 3)
			return false;	/* not known */
		snprintf(buf, len, "%llu", (unsigned long long)r->fastpath);
		return true;
	case COL_TIME_PCT:
		snprintf(buf, len, "%.2f", pct(r->cycles, t->cycles));
		return true;
	case COL_RATE:
		if (v->seconds <= 0)
			return false;
		snprintf(buf, len, "%.1f", (double)r->count / v->seconds);
		return true;
	default:
		/* Times of exits that were not measured (bucket 0) are unknown. */
		if (!es_measured(r) && col != COL_TOTAL)
			return false;
		fmt_time(v, time_value(v, r, col), buf, len);
		return true;
	}
}

/*
 * A cell of a sub-reason: only its name, count, times and shares, shown
 * as cell() shows those of a row with its count and cycles.
 */
static bool key_cell(const struct view *v, const struct es_key *k, int col,
		     char *buf, size_t len)
{
	struct es_row r = { .count = k->count, .cycles = k->cycles,
			    .avg = k->cycles / k->count };

	switch (col) {
	case COL_REASON:
	case COL_COUNT:
	case COL_COUNT_PCT:
	case COL_TIME_PCT:
	case COL_TOTAL:
	case COL_AVG:
		memcpy(r.name, k->key, sizeof(r.name));
		return cell(v, &r, col, buf, len);
	default:
		return false;
	}
}

/* The most frequent sub-reason first, "other" last. */
static int cmp_keys(const void *a, const void *b)
{
	const struct es_key *x = *(const struct es_key *const *)a;
	const struct es_key *y = *(const struct es_key *const *)b;
	int xo = !strcmp(x->key, "other"), yo = !strcmp(y->key, "other");

	if (xo != yo)
		return xo - yo;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return strcmp(x->key, y->key);
}

static enum sortkey g_sort;
static bool g_reverse;
static const struct es_layout *g_layout;

static uint64_t sort_value(const struct es_row *r, enum sortkey k)
{
	switch (k) {
	case S_COUNT: return r->count;
	case S_TOTAL: return r->cycles;
	case S_AVG: return r->avg;
	case S_MIN: return r->min;
	case S_MAX: return r->max;
	case S_P99: return es_quantile(g_layout, r, 0.99);
	case S_REASON: return r->has_reason ? r->reason : UINT64_MAX;
	default: return 0;
	}
}

static int cmp_rows(const void *a, const void *b)
{
	const struct es_row *x = a, *y = b;
	int c;

	if (g_sort == S_NAME) {
		c = strcmp(x->name, y->name);
	} else {
		uint64_t vx = sort_value(x, g_sort), vy = sort_value(y, g_sort);

		c = vx < vy ? -1 : vx > vy;
		/* Numbers largest first, reason numbers smallest first. */
		if (g_sort != S_REASON)
			c = -c;
		if (!c)
			c = strcmp(x->name, y->name);
	}
	return g_reverse ? -c : c;
}

/* Sort, drop zero rows, cut to --top; returns the rows to show. */
static size_t select_rows(const struct opts *o, struct es_stats *st)
{
	size_t i, n = 0;

	for (i = 0; i < st->nrows; i++)
		if (!o->skip_zero || st->rows[i].count)
			st->rows[n++] = st->rows[i];
	st->nrows = n;
	g_sort = o->sort;
	g_reverse = o->reverse;
	g_layout = &st->layout;
	qsort(st->rows, st->nrows, sizeof(st->rows[0]), cmp_rows);
	if (o->top >= 0 && (size_t)o->top < st->nrows)
		return o->top;
	return st->nrows;
}

/* ----- output ----- */

/*
 * The columns to print into @out, their number returned: --output's, but
 * not the default FASTPATH column of a file that has no fastpath field.
 */
static size_t shown_cols(const struct view *v, int *out)
{
	const struct opts *o = v->o;
	size_t c, n = 0;

	for (c = 0; c < o->ncols; c++)
		if (o->cols[c] != COL_FASTPATH || o->fastpath_asked ||
		    v->st->layout.version >= 3)
			out[n++] = o->cols[c];
	return n;
}

/* The sub-reasons of @r, as children of its line @parent. */
/*
 * A column of the scols table: which column, shown through which view
 * (JSON adds each time column twice more, in cycles and in ns).
 */
struct scol {
	int col;
	const struct view *v;
};

/* The sub-reasons of @r, as children of its line @parent. */
static void add_key_lines(const struct view *v, struct libscols_table *tb,
			  struct libscols_line *parent, const struct es_row *r,
			  const struct scol *sc, size_t nc)
{
	const struct es_key **keys;
	size_t i, c, n = 0;
	char buf[64];

	keys = malloc(v->detail->nkeys * sizeof(*keys) + 1);
	if (!keys)
		die(EXIT_RUNTIME, "out of memory");
	for (i = 0; i < v->detail->nkeys; i++)
		if (es_key_of(&v->detail->keys[i], r))
			keys[n++] = &v->detail->keys[i];
	qsort(keys, n, sizeof(*keys), cmp_keys);
	for (i = 0; i < n; i++) {
		struct libscols_line *ln = scols_table_new_line(tb, parent);

		if (!ln)
			die(EXIT_RUNTIME, "out of memory");
		for (c = 0; c < nc; c++)
			if (key_cell(sc[c].v, keys[i], sc[c].col, buf, sizeof(buf)) &&
			    scols_line_set_data(ln, c, buf))
				die(EXIT_RUNTIME, "out of memory");
	}
	free(keys);
}

static void json_str(const char *s);

/*
 * -J: the file's header and what the rows are, as the first members of the
 * document; @st may be NULL (--per without VMs).
 */
static void json_meta(const struct opts *o, const struct es_stats *st,
		      double seconds)
{
	static const char *const modes[] = { "split", "l1", "l2", "all" };
	static const char *const per_names[] = { "", "vm", "vcpu" };
	enum unit unit = o->unit == U_AUTO ? U_NS : o->unit;

	if (st)
		printf("   \"format_version\": %u,\n   \"vendor\": \"%s\",\n"
		       "   \"tsc_khz\": %llu,\n", st->layout.version, st->vendor,
		       (unsigned long long)st->tsc_khz);
	/* With --per, each VM or vCPU has its own. */
	if (st && !o->per)
		printf("   \"since_reset_ns\": %llu,\n", (unsigned long long)st->since_ns);
	printf("   \"scope\": {\"kind\": ");
	if (o->file) {
		printf("\"file\", \"file\": ");
		json_str(o->file);
	} else if (o->vm) {
		printf("\"%s\", \"vm\": ", o->vcpu >= 0 ? "vcpu" : "vm");
		json_str(o->vm);
		if (o->vcpu >= 0)
			printf(", \"vcpu\": %ld", o->vcpu);
	} else if (o->pid >= 0) {
		printf("\"pid\", \"pid\": %ld", o->pid);
	} else {
		printf("\"host\"");
	}
	printf("},\n");
	if (o->per)
		printf("   \"per\": \"%s\",\n", per_names[o->per]);
	printf("   \"guest_mode\": \"%s\",\n   \"unit\": \"%s\",\n",
	       modes[o->mode], unit_names[unit]);
	if (o->interval > 0)
		printf("   \"seconds\": %.3f,\n", seconds);
}

/* Print @tb, as JSON with json_meta()'s members first. */
static void print_table(const struct opts *o, struct libscols_table *tb,
			const struct es_stats *st, double seconds)
{
	char *text = NULL;

	if (o->format != F_JSON) {
		scols_print_table(tb);
		return;
	}
	/* libsmartcols prints "{\n", the table's array, "}\n". */
	if (scols_print_table_to_string(tb, &text) || !text ||
	    strncmp(text, "{\n", 2))
		die(EXIT_RUNTIME, "out of memory");
	printf("{\n");
	json_meta(o, st, seconds);
	fputs(text + 2, stdout);
	free(text);
}

static void print_scols(const struct view *v, size_t nrows)
{
	const struct opts *o = v->o;
	struct libscols_table *tb = scols_new_table();
	struct opts ocyc = *o, ons = *o;
	struct view vcyc = *v, vns = *v;
	int shown[NCOLS * 2];
	struct scol sc[NCOLS * 6];
	size_t i, c, nc = 0, ns = shown_cols(v, shown);
	char buf[64], name[32];

	if (!tb)
		die(EXIT_RUNTIME, "out of memory");
	ocyc.unit = U_CYCLES;
	ons.unit = U_NS;
	vcyc.o = &ocyc;
	vns.o = &ons;
	scols_table_enable_noheadings(tb, o->noheadings);
	if (o->format == F_JSON) {
		scols_table_enable_json(tb, 1);
		scols_table_set_name(tb, "exit_stats");
	}
	for (c = 0; c < ns; c++) {
		const struct colinfo *ci = &cols[shown[c]];
		int k, variants = o->format == F_JSON && ci->kind == K_TIME ? 3 : 1;

		for (k = 0; k < variants; k++) {
			struct libscols_column *cl;

			snprintf(name, sizeof(name), "%s%s", ci->name,
				 k == 1 ? "_CYCLES" : k == 2 ? "_NS" : "");
			sc[nc].col = shown[c];
			sc[nc].v = k == 1 ? &vcyc : k == 2 ? &vns : v;
			cl = scols_table_new_column(tb, name, ci->whint, ci->flags |
						    (v->detail && shown[c] == COL_REASON ?
						     SCOLS_FL_TREE : 0));
			if (!cl)
				die(EXIT_RUNTIME, "out of memory");
			if (o->format == F_JSON)
				scols_column_set_json_type(cl, ci->kind == K_TEXT &&
							   shown[c] != COL_NR ?
							   SCOLS_JSON_STRING : SCOLS_JSON_NUMBER);
			nc++;
		}
	}
	for (i = 0; i <= nrows; i++) {
		const struct es_row *r = i < nrows ? &v->st->rows[i] : &v->st->total;
		struct libscols_line *ln = scols_table_new_line(tb, NULL);

		if (!ln)
			die(EXIT_RUNTIME, "out of memory");
		for (c = 0; c < nc; c++)
			if (cell(sc[c].v, r, sc[c].col, buf, sizeof(buf)) &&
			    scols_line_set_data(ln, c, buf))
				die(EXIT_RUNTIME, "out of memory");
		if (v->detail && i < nrows)
			add_key_lines(v, tb, ln, r, sc, nc);
	}
	print_table(o, tb, v->st, v->seconds);
	scols_unref_table(tb);
}

static void csv_field(const char *s)
{
	if (!strpbrk(s, ",\"\n")) {
		fputs(s, stdout);
		return;
	}
	putchar('"');
	for (; *s; s++) {
		if (*s == '"')
			putchar('"');
		putchar(*s);
	}
	putchar('"');
}

/*
 * --csv-meta: what the file's header and the command line say about the
 * rows, as "# key value" lines before the CSV (which RFC 4180 has no place
 * for; CSV readers skip them with a comment character of '#').  @st is
 * NULL with --per and no VM.
 */
static void csv_meta(const struct opts *o, const struct es_stats *st,
		     double seconds)
{
	static const char *const per_names[] = { "", "vm", "vcpu" };
	enum unit unit = o->unit == U_AUTO ? U_NS : o->unit;

	if (st)
		printf("# format_version %u\n# vendor %s\n# tsc_khz %llu\n# since_reset_ns %llu\n",
		       st->layout.version, st->vendor, (unsigned long long)st->tsc_khz,
		       (unsigned long long)st->since_ns);
	if (o->file)
		printf("# scope file %s\n", o->file);
	else if (o->vm && o->vcpu >= 0)
		printf("# scope vcpu %s %ld\n", o->vm, o->vcpu);
	else if (o->vm)
		printf("# scope vm %s\n", o->vm);
	else if (o->pid >= 0)
		printf("# scope pid %ld\n", o->pid);
	else
		printf("# scope host\n");
	if (o->per)
		printf("# per %s\n", per_names[o->per]);
	printf("# unit %s\n", unit_names[unit]);
	if (o->interval > 0)
		printf("# seconds %.3f\n", seconds);
}

static void print_csv(const struct view *v, size_t nrows)
{
	int sc[NCOLS * 2];
	size_t i, c, nc = shown_cols(v, sc);
	char buf[64];

	if (v->o->csv_meta)
		csv_meta(v->o, v->st, v->seconds);
	if (!v->o->noheadings) {
		for (c = 0; c < nc; c++)
			printf("%s%s", c ? "," : "", cols[sc[c]].name);
		putchar('\n');
	}
	for (i = 0; i <= nrows; i++) {
		const struct es_row *r = i < nrows ? &v->st->rows[i] : &v->st->total;

		for (c = 0; c < nc; c++) {
			if (c)
				putchar(',');
			if (cell(v, r, sc[c], buf, sizeof(buf)))
				csv_field(buf);
		}
		putchar('\n');
	}
}

/*
 * @src as a label value of the text exposition format, into @dst of at
 * least 2 * strlen(@src) + 1 bytes: backslash and quote escaped (a name
 * has no newline).
 */
static void prom_escape(char *dst, const char *src)
{
	for (; *src; src++) {
		if (*src == '\\' || *src == '"')
			*dst++ = '\\';
		*dst++ = *src;
	}
	*dst = '\0';
}

static void prom_series(const char *name, const struct es_stats *st,
			const struct es_row *r, const char *le, const char *extra)
{
	char reason[2 * ES_NAME_MAX + 1];

	prom_escape(reason, r->name);
	printf("%s{vendor=\"%s\",reason=\"%s\"", name, st->vendor, reason);
	if (r->has_reason)
		printf(",nr=\"%u\"", r->reason);
	printf("%s", extra);
	if (le)
		printf(",le=\"%s\"", le);
	printf("} ");
}

/*
 * Text exposition format: counters and a histogram in seconds, of @n
 * scopes: @sts[i]'s first @nrows[i] rows, with the labels @extras[i] (""
 * or ",vm=...,comm=...") added to each series.
 */
static void print_prometheus_of(struct es_stats *const *sts, const size_t *nrows,
				char *const *extras, size_t n)
{
	char le[32];
	unsigned int b;
	size_t i, k;
	bool fastpath = false;

	printf("# HELP kvm_exits_total VM-Exits handled by KVM, by exit reason.\n"
	       "# TYPE kvm_exits_total counter\n");
	for (k = 0; k < n; k++) {
		fastpath |= sts[k]->layout.version >= 3;
		for (i = 0; i < nrows[k]; i++) {
			prom_series("kvm_exits_total", sts[k], &sts[k]->rows[i], NULL, extras[k]);
			printf("%llu\n", (unsigned long long)sts[k]->rows[i].count);
		}
	}
	if (fastpath) {
		printf("# HELP kvm_exits_fastpath_total VM-Exits that KVM handled in its fastpath, by exit reason.\n"
		       "# TYPE kvm_exits_fastpath_total counter\n");
		for (k = 0; k < n; k++) {
			if (sts[k]->layout.version < 3)
				continue;
			for (i = 0; i < nrows[k]; i++) {
				prom_series("kvm_exits_fastpath_total", sts[k],
					    &sts[k]->rows[i], NULL, extras[k]);
				printf("%llu\n", (unsigned long long)sts[k]->rows[i].fastpath);
			}
		}
	}
	printf("# HELP kvm_exit_handling_seconds Time KVM took to handle a VM-Exit, measured exits only.\n"
	       "# TYPE kvm_exit_handling_seconds histogram\n");
	for (k = 0; k < n; k++) {
		const struct es_stats *st = sts[k];
		double hz = (double)st->tsc_khz * 1e3;

		for (i = 0; i < nrows[k]; i++) {
			const struct es_row *r = &st->rows[i];
			uint64_t cum = 0, lo, hi;

			/*
			 * The file's buckets, cumulative: le is the upper bound
			 * of bucket b (version 1: 2^b cycles), after an le of 1
			 * cycle, below which nothing is; the last bucket is open
			 * (+Inf).  The exits in bucket 0 have no time: they are
			 * left out, so that _sum / _count is the average.
			 */
			for (b = 0; b < st->layout.nbuckets - 1; b++) {
				if (b) {
					cum += r->hist[b];
					es_bucket_bounds(&st->layout, b, &lo, &hi);
				} else {
					hi = 1;
				}
				snprintf(le, sizeof(le), "%.6g", (double)hi / hz);
				prom_series("kvm_exit_handling_seconds_bucket", st, r, le,
					    extras[k]);
				printf("%llu\n", (unsigned long long)cum);
			}
			prom_series("kvm_exit_handling_seconds_bucket", st, r, "+Inf", extras[k]);
			printf("%llu\n", (unsigned long long)es_measured(r));
			prom_series("kvm_exit_handling_seconds_sum", st, r, NULL, extras[k]);
			printf("%.9g\n", (double)r->cycles / hz);
			prom_series("kvm_exit_handling_seconds_count", st, r, NULL, extras[k]);
			printf("%llu\n", (unsigned long long)es_measured(r));
		}
	}
}

static void print_prometheus(const struct view *v, size_t nrows)
{
	char *none = "";

	print_prometheus_of(&v->st, &nrows, &none, 1);
}

static void print_stats(const struct view *v)
{
	size_t n = select_rows(v->o, v->st);

	switch (v->o->format) {
	case F_CSV:
		print_csv(v, n);
		break;
	case F_PROM:
		print_prometheus(v, n);
		break;
	default:
		print_scols(v, n);
		break;
	}
}

/* ----- histograms ----- */

#define HIST_BAR	40

/* Does @r match one of --hist's REASONs (a name, any case, or a number)? */
static bool hist_wanted(const struct opts *o, const struct es_row *r, bool *used)
{
	size_t i;
	bool any = false;

	if (!o->hist_reasons)
		return true;
	for (i = 0; o->hist_reasons[i]; i++) {
		const char *a = o->hist_reasons[i];
		char *end;
		unsigned long nr;

		errno = 0;
		nr = strtoul(a, &end, a[0] == '0' && (a[1] == 'x' || a[1] == 'X') ? 16 : 10);
		if (!strcasecmp(a, r->name) ||
		    (!errno && end != a && !*end && r->has_reason && nr == r->reason)) {
			used[i] = true;
			any = true;
		}
	}
	return any;
}

/* @cycles in @unit: 4 significant digits, all of them from 10000 on. */
static void hist_num(const struct es_stats *st, enum unit unit, uint64_t cycles,
		     char *buf, size_t len)
{
	static const double per_ns[] = { [U_NS] = 1, [U_US] = 1e3, [U_MS] = 1e6 };
	double v;

	if (unit == U_CYCLES) {
		snprintf(buf, len, "%llu", (unsigned long long)cycles);
		return;
	}
	v = (double)cycles * 1e6 / (double)st->tsc_khz / per_ns[unit];
	snprintf(buf, len, v < 9999.5 ? "%.4g" : "%.0f", v);
}

/*
 * The unit of @r's chart: -u's, or the one in which its largest finite
 * bucket bound is below 10000.
 */
static enum unit hist_unit(const struct opts *o, const struct es_stats *st,
			   const struct es_row *r)
{
	uint64_t lo, hi, top = 0;
	unsigned int b;
	double ns;

	if (o->unit != U_AUTO)
		return o->unit;
	for (b = 1; b < st->layout.nbuckets; b++) {
		if (!r->hist[b])
			continue;
		es_bucket_bounds(&st->layout, b, &lo, &hi);
		top = hi == ES_INF ? lo : hi;
	}
	ns = (double)top * 1e6 / (double)st->tsc_khz;
	return ns < 1e4 ? U_NS : ns < 1e7 ? U_US : U_MS;
}

/* The label of bucket @b, "[lower, upper)" or "untimed"; its length. */
static int hist_label(const struct es_stats *st, enum unit unit, unsigned int b,
		      char *buf, size_t len)
{
	uint64_t lo, hi;
	char a[32], z[32];

	if (!b)
		return snprintf(buf, len, "untimed");
	es_bucket_bounds(&st->layout, b, &lo, &hi);
	hist_num(st, unit, lo, a, sizeof(a));
	hist_num(st, unit, hi, z, sizeof(z));
	return snprintf(buf, len, "[%s, %s)", a, hi == ES_INF ? "inf" : z);
}

/* One reason's chart: a title, then a line per non-empty bucket. */
static void hist_table(const struct opts *o, const struct es_stats *st,
		       const struct es_row *r)
{
	enum unit unit = hist_unit(o, st, r);
	uint64_t max = 0;
	char a[32], label[80];
	unsigned int b;
	int lw = 0, cw = 1, n;

	for (b = 0; b < st->layout.nbuckets; b++) {
		if (!r->hist[b])
			continue;
		if (r->hist[b] > max)
			max = r->hist[b];
		n = hist_label(st, unit, b, label, sizeof(label));
		if (n > lw)
			lw = n;
		n = snprintf(a, sizeof(a), "%llu", (unsigned long long)r->hist[b]);
		if (n > cw)
			cw = n;
	}
	if (!o->noheadings) {
		printf("%s", r->name);
		if (r->has_reason)
			printf(" (%u)", r->reason);
		printf(", %llu exit%s, in %s:\n", (unsigned long long)r->count,
		       r->count == 1 ? "" : "s", unit_names[unit]);
	}
	/* Bucket 0, the exits without a time, last. */
	for (b = 1; b <= st->layout.nbuckets; b++) {
		unsigned int i = b % st->layout.nbuckets;

		if (!r->hist[i])
			continue;
		hist_label(st, unit, i, label, sizeof(label));
		n = (int)((double)r->hist[i] * HIST_BAR / (double)max);
		printf("%-*s %*llu |%.*s%*s|\n", lw, label, cw,
		       (unsigned long long)r->hist[i], n,
		       "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@", HIST_BAR - n, "");
	}
}

/* A JSON string: the names are the file's words, escaped all the same. */
static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void json_bound(const struct es_stats *st, const char *name, uint64_t v,
		       bool ns)
{
	if (v == ES_INF)
		printf("\"%s\": null", name);
	else if (ns)
		printf("\"%s\": %.3f", name, (double)v * 1e6 / (double)st->tsc_khz);
	else
		printf("\"%s\": %llu", name, (unsigned long long)v);
}

/* One reason's buckets, with bounds in cycles and in ns. */
static void hist_json(const struct es_stats *st, const struct es_row *r,
		      bool first)
{
	uint64_t lo, hi;
	unsigned int b;
	bool any = false;

	printf("%s\n    {\"reason\": ", first ? "" : ",");
	if (r->has_reason)
		printf("%u", r->reason);
	else
		printf("null");
	printf(", \"name\": ");
	json_str(r->name);
	printf(", \"count\": %llu, \"untimed\": %llu,\n     \"buckets\": [",
	       (unsigned long long)r->count, (unsigned long long)r->hist[0]);
	for (b = 1; b < st->layout.nbuckets; b++) {
		if (!r->hist[b])
			continue;
		es_bucket_bounds(&st->layout, b, &lo, &hi);
		printf("%s\n       {", any ? "," : "");
		json_bound(st, "lower_cycles", lo, false);
		printf(", ");
		json_bound(st, "upper_cycles", hi, false);
		printf(", ");
		json_bound(st, "lower_ns", lo, true);
		printf(", ");
		json_bound(st, "upper_ns", hi, true);
		printf(", \"count\": %llu}", (unsigned long long)r->hist[b]);
		any = true;
	}
	printf("%s]}", any ? "\n     " : "");
}

/* --hist: the charts of the rows shown, or of the REASONs asked for. */
static int print_hists(const struct opts *o, struct es_stats *st)
{
	size_t i, nr = 0, n = select_rows(o, st);
	bool *used, first = true;
	int status = EXIT_OK;

	while (o->hist_reasons && o->hist_reasons[nr])
		nr++;
	used = calloc(nr + 1, sizeof(*used));
	if (!used)
		die(EXIT_RUNTIME, "out of memory");
	if (o->format == F_JSON) {
		printf("{\n");
		json_meta(o, st, 0);
		printf("   \"histograms\": [");
	}
	for (i = 0; i < n; i++) {
		const struct es_row *r = &st->rows[i];

		if (!hist_wanted(o, r, used) || !r->count)
			continue;
		if (o->format == F_JSON) {
			hist_json(st, r, first);
		} else {
			if (!first)
				putchar('\n');
			hist_table(o, st, r);
		}
		first = false;
	}
	if (o->format == F_JSON)
		printf("%s]}\n", first ? "" : "\n");
	for (i = 0; i < nr; i++) {
		if (!used[i]) {
			fprintf(stderr, "%s: no exits of '%s' shown (no such reason in the scope, no exits, or left out by -t or --guest-mode)\n",
				prog, o->hist_reasons[i]);
			status = EXIT_RUNTIME;
		}
	}
	free(used);
	return status;
}

/* ----- live mode ----- */

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* A copy of @src in @dst, rows included; es_free() it. */
static void stats_dup(const struct es_stats *src, struct es_stats *dst)
{
	*dst = *src;
	dst->rows = malloc((src->nrows ? src->nrows : 1) * sizeof(*dst->rows));
	if (!dst->rows)
		die(EXIT_RUNTIME, "out of memory");
	memcpy(dst->rows, src->rows, src->nrows * sizeof(*dst->rows));
}

/*
 * @cur minus @prev into @delta.  Returns false when the counters went back,
 * i.e. were reset between the reads: then @delta is @cur, all since reset.
 */
static bool stats_delta(const struct es_stats *prev, const struct es_stats *cur,
			struct es_stats *delta)
{
	size_t i;
	unsigned int b;

	stats_dup(cur, delta);
	/* A reset, or another histogram layout (another kernel): all new. */
	if (cur->since_ns < prev->since_ns ||
	    !es_layout_equal(&cur->layout, &prev->layout))
		return false;
	for (i = 0; i < cur->nrows; i++) {
		const struct es_row *p = es_find(prev, &cur->rows[i]);
		struct es_row *d = &delta->rows[i];

		if (!p)
			continue;
		if (p->count > d->count || p->cycles > d->cycles) {
			memcpy(delta->rows, cur->rows, cur->nrows * sizeof(*delta->rows));
			return false;
		}
		d->count -= p->count;
		d->fastpath -= p->fastpath <= d->fastpath ? p->fastpath : d->fastpath;
		d->cycles -= p->cycles;
		for (b = 0; b < cur->layout.nbuckets; b++)
			d->hist[b] -= p->hist[b] <= d->hist[b] ? p->hist[b] : d->hist[b];
	}
	for (i = 0; i < prev->nrows; i++) {
		if (!es_find(cur, &prev->rows[i])) {
			/* A row vanished: the counters were reset. */
			memcpy(delta->rows, cur->rows, cur->nrows * sizeof(*delta->rows));
			return false;
		}
	}
	return true;
}

/* Live mode: SIGINT and SIGTERM end the loop at the next interval. */
static void live_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* Sleep one --interval; false if a signal asked to stop. */
static bool live_wait(const struct opts *o)
{
	struct timespec ts = {
		.tv_sec = (time_t)o->interval,
		.tv_nsec = (long)((o->interval - (double)(time_t)o->interval) * 1e9),
	};

	while (nanosleep(&ts, &ts) && errno == EINTR && !stop)
		;
	return !stop;
}

/* The start of interval @n's title line in a table: the time of day. */
static void live_stamp(long n)
{
	char when[16];
	time_t now = time(NULL);

	strftime(when, sizeof(when), "%H:%M:%S", localtime(&now));
	printf("%s%s", n ? "\n" : "", when);
}

static void live(struct opts *o)
{
	struct es_stats prev, cur, delta;
	long n;

	live_signals();
	read_scope(o, &prev);
	for (n = 0; !stop && (o->count < 0 || n < o->count); n++) {
		struct view v = { o, &delta, 0, NULL };
		bool cont;

		if (!live_wait(o))
			break;
		read_scope(o, &cur);
		cont = stats_delta(&prev, &cur, &delta);
		v.seconds = (double)(cont ? cur.since_ns - prev.since_ns
				     : cur.since_ns) / 1e9;
		es_finish(&delta);
		if (o->format == F_TABLE) {
			live_stamp(n);
			printf("  %.3f s%s\n", v.seconds, cont ? "" : "  (counters were reset)");
		}
		print_stats(&v);
		fflush(stdout);
		es_free(&delta);
		es_free(&prev);
		prev = cur;
	}
	es_free(&prev);
}

/* ----- --per vm|vcpu ----- */

/* One VM or one vCPU, and its counters. */
struct ent {
	char vm[NAME_MAX + 1];	/* PID-FD */
	long pid;
	long vcpu;		/* -1: the VM */
	char comm[64];		/* /proc/PID/comm, "?" if gone */
	struct es_stats st;
	double seconds;		/* of the live delta, 0 otherwise */
	bool reset;		/* live: counters reset since the last read */
};

/* A VM's directory name, PID-FD: its PID, or -1 if @name is not one. */
static long vm_pid(const char *name)
{
	unsigned long pid, fd;
	int n = -1;

	if (sscanf(name, "%lu-%lu%n", &pid, &fd, &n) != 2 || n < 0 || name[n] ||
	    !pid || pid > INT_MAX || name[0] == '+' || name[0] == '-')
		return -1;
	return (long)pid;
}

/*
 * A process may name itself with any bytes, and the kernel cuts the name
 * at 15 bytes, maybe inside a character: replace control bytes and bytes
 * that are not UTF-8 with '?', so that JSON and Prometheus stay valid.
 */
static void utf8_sanitize(char *s)
{
	unsigned char *p = (unsigned char *)s;

	while (*p) {
		int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 :
			(*p & 0xf0) == 0xe0 ? 2 : (*p & 0xf8) == 0xf0 ? 3 : -1;
		int i;

		for (i = 1; n > 0 && i <= n; i++)
			if ((p[i] & 0xc0) != 0x80)
				n = -1;
		if (n < 0 || *p < 0x20 || *p == 0x7f || (n == 1 && *p < 0xc2)) {
			*p++ = '?';
			continue;
		}
		p += n + 1;
	}
}

static void read_comm(long pid, char *buf, size_t len)
{
	char *path;
	FILE *f;

	snprintf(buf, len, "?");
	if (asprintf(&path, "%s/proc/%ld/comm", sysroot, pid) < 0)
		die(EXIT_RUNTIME, "out of memory");
	f = fopen(path, "r");
	free(path);
	if (!f)
		return;
	if (fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = '\0';
	else
		snprintf(buf, len, "?");
	fclose(f);
	utf8_sanitize(buf);
}

/*
 * Read the exit_stats file of @e's VM or vCPU: false if it is gone (the VM
 * was destroyed since its directory was listed).
 */
static bool read_ent(const struct opts *o, struct ent *e)
{
	char *path;
	bool r;

	if ((e->vcpu < 0 ? asprintf(&path, "%s/%s/" STATS, kvm_dir, e->vm) :
	     asprintf(&path, "%s/%s/vcpu%ld/" STATS, kvm_dir, e->vm, e->vcpu)) < 0)
		die(EXIT_RUNTIME, "out of memory");
	r = read_one_opt(path, &e->st, true);
	free(path);
	if (r)
		es_guest_mode(&e->st, o->mode);
	return r;
}

static int cmp_ent_id(const void *a, const void *b)
{
	const struct ent *x = a, *y = b;
	int c = strverscmp(x->vm, y->vm);

	return c ? c : (x->vcpu > y->vcpu) - (x->vcpu < y->vcpu);
}

/*
 * The VMs (or their vCPUs) of the scope, in PID-FD, vCPU order.  Only the
 * @first read of a scope without any is an error: later, in live mode,
 * the VMs went away.
 */
static size_t gather(const struct opts *o, struct ent **out, bool first)
{
	struct ent *ents = NULL;
	size_t n = 0;
	struct dirent *d, *vd;
	DIR *dir = opendir(kvm_dir), *vdir;

	if (!dir)
		die_open(kvm_dir, errno);
	while ((d = readdir(dir))) {
		long pid = vm_pid(d->d_name), vcpu = -1;
		char *vpath = NULL;

		if (pid < 0 || (o->pid >= 0 && pid != o->pid) ||
		    (o->vm && strcmp(o->vm, d->d_name)))
			continue;
		vdir = NULL;
		if (o->per == PER_VCPU) {
			if (asprintf(&vpath, "%s/%s", kvm_dir, d->d_name) < 0)
				die(EXIT_RUNTIME, "out of memory");
			vdir = opendir(vpath);
			free(vpath);
			if (!vdir)
				continue;	/* destroyed meanwhile */
		}
		for (;;) {
			struct ent *e;

			if (vdir) {
				char *end;

				vd = readdir(vdir);
				if (!vd)
					break;
				if (strncmp(vd->d_name, "vcpu", 4) || !isdigit((unsigned char)vd->d_name[4]))
					continue;
				vcpu = strtol(vd->d_name + 4, &end, 10);
				if (*end || (o->vcpu >= 0 && vcpu != o->vcpu))
					continue;
			}
			ents = realloc(ents, (n + 1) * sizeof(*ents));
			if (!ents)
				die(EXIT_RUNTIME, "out of memory");
			e = &ents[n];
			memset(e, 0, sizeof(*e));
			snprintf(e->vm, sizeof(e->vm), "%s", d->d_name);
			e->pid = pid;
			e->vcpu = vcpu;
			if (read_ent(o, e)) {
				read_comm(pid, e->comm, sizeof(e->comm));
				n++;
			}
			if (!vdir)
				break;
		}
		if (vdir)
			closedir(vdir);
	}
	closedir(dir);
	if (!n && first && o->vm && o->vcpu >= 0)
		die(EXIT_RUNTIME, "no vCPU %ld of VM %s (no %s/%s/vcpu%ld/" STATS ")",
		    o->vcpu, o->vm, kvm_dir, o->vm, o->vcpu);
	if (!n && first && o->vm)
		die(EXIT_RUNTIME, "no VM %s (no %s/%s%s)", o->vm, kvm_dir, o->vm,
		    o->per == PER_VCPU ? " with vCPU files" : "");
	if (!n && first && o->pid >= 0)
		die(EXIT_RUNTIME, "process %ld has no VM (no %s/%ld-*)", o->pid,
		    kvm_dir, o->pid);
	if (n)
		qsort(ents, n, sizeof(*ents), cmp_ent_id);
	*out = ents;
	return n;
}

static void free_ents(struct ent *ents, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		es_free(&ents[i].st);
	free(ents);
}

/* The row of @st with the most exits, NULL if none. */
static const struct es_row *top_row(const struct es_stats *st)
{
	const struct es_row *top = NULL;
	size_t i;

	for (i = 0; i < st->nrows; i++)
		if (st->rows[i].count && (!top || st->rows[i].count > top->count))
			top = &st->rows[i];
	return top;
}

enum { PC_VM, PC_VCPU, PC_PID, PC_COMM, PC_EXITS, PC_RATE, PC_TOTAL,
       PC_TIME_PCT, PC_AVG, PC_TOP, PC_TOP_PCT, NPCOLS };
/* -J: a time column again in cycles, and in ns. */
#define PC_MASK		0xff
#define PC_CYCLES	0x100
#define PC_NS		0x200

static const struct colinfo pcols[NPCOLS] = {
	[PC_VM]		= { "VM", 8, 0, K_TEXT, "the VM: PID-FD, its directory in debugfs" },
	[PC_VCPU]	= { "VCPU", 4, SCOLS_FL_RIGHT, K_COUNT, "the vCPU's index (--per vcpu)" },
	[PC_PID]	= { "PID", 6, SCOLS_FL_RIGHT, K_COUNT, "the VM's process" },
	[PC_COMM]	= { "COMM", 0.2, 0, K_TEXT, "its name, /proc/PID/comm" },
	[PC_EXITS]	= { "EXITS", 6, SCOLS_FL_RIGHT, K_COUNT, "exits" },
	[PC_RATE]	= { "RATE", 6, SCOLS_FL_RIGHT, K_RATE, "exits per second (--interval)" },
	[PC_TOTAL]	= { "TOTAL", 8, SCOLS_FL_RIGHT, K_TIME, "time spent handling them" },
	[PC_TIME_PCT]	= { "TIME%", 6, SCOLS_FL_RIGHT, K_PCT, "share of the handling time of all rows" },
	[PC_AVG]	= { "AVG", 6, SCOLS_FL_RIGHT, K_TIME, "average handling time" },
	[PC_TOP]	= { "TOP", 0.2, 0, K_TEXT, "the reason with the most exits" },
	[PC_TOP_PCT]	= { "TOP%", 6, SCOLS_FL_RIGHT, K_PCT, "its share of the exits" },
};

/* The text of cell @col of @e; false if empty (null in JSON). */
static bool ent_cell(const struct opts *o, const struct ent *e, uint64_t all_cycles,
		     int col, char *buf, size_t len)
{
	const struct es_row *t = &e->st.total, *top = top_row(&e->st);
	struct view v = { o, (struct es_stats *)&e->st, e->seconds, NULL };

	switch (col) {
	case PC_VM: snprintf(buf, len, "%s", e->vm); return true;
	case PC_VCPU: snprintf(buf, len, "%ld", e->vcpu); return true;
	case PC_PID: snprintf(buf, len, "%ld", e->pid); return true;
	case PC_COMM: snprintf(buf, len, "%s", e->comm); return true;
	case PC_EXITS: snprintf(buf, len, "%llu", (unsigned long long)t->count); return true;
	case PC_RATE:
		if (e->seconds <= 0)
			return false;
		snprintf(buf, len, "%.1f", (double)t->count / e->seconds);
		return true;
	case PC_TOTAL: fmt_time(&v, t->cycles, buf, len); return true;
	case PC_TIME_PCT: snprintf(buf, len, "%.2f", pct(t->cycles, all_cycles)); return true;
	case PC_AVG:
		if (!es_measured(t))
			return false;
		fmt_time(&v, t->avg, buf, len);
		return true;
	case PC_TOP:
		if (!top)
			return false;
		snprintf(buf, len, "%s", top->name);
		return true;
	case PC_TOP_PCT:
		if (!top)
			return false;
		snprintf(buf, len, "%.2f", pct(top->count, t->count));
		return true;
	}
	return false;
}

static enum sortkey g_ent_sort;

static int cmp_ents(const void *a, const void *b)
{
	const struct es_row *x = &((const struct ent *)a)->st.total;
	const struct es_row *y = &((const struct ent *)b)->st.total;
	uint64_t vx, vy;
	int c;

	switch (g_ent_sort) {
	case S_NAME:
		c = cmp_ent_id(a, b);
		return g_reverse ? -c : c;
	case S_TOTAL: vx = x->cycles; vy = y->cycles; break;
	case S_AVG: vx = x->avg; vy = y->avg; break;
	default: vx = x->count; vy = y->count; break;
	}
	c = vx > vy ? -1 : vx < vy;
	if (!c)
		c = cmp_ent_id(a, b);
	return g_reverse ? -c : c;
}

/* Sort (default: most exits first) and cut to --top; returns how many. */
static size_t select_ents(const struct opts *o, struct ent *ents, size_t n)
{
	size_t i, k = 0;

	/* -z: the rows with exits first, and only those shown. */
	for (i = 0; i < n; i++) {
		if (o->skip_zero && !ents[i].st.total.count)
			continue;
		if (i != k) {
			struct ent t = ents[k];

			ents[k] = ents[i];
			ents[i] = t;
		}
		k++;
	}
	n = k;
	g_ent_sort = o->sort;
	g_reverse = o->reverse;
	if (n)
		qsort(ents, n, sizeof(*ents), cmp_ents);
	return o->top >= 0 && (size_t)o->top < n ? (size_t)o->top : n;
}

/* VM or vCPU: --per's table, JSON or CSV, or (--per vm) Prometheus. */
static void print_ents(const struct opts *o, struct ent *ents, size_t total_n,
		       bool live)
{
	size_t i, n = select_ents(o, ents, total_n);
	struct opts ocyc = *o, ons = *o;
	const struct opts *so[NPCOLS * 3];
	struct libscols_table *tb;
	uint64_t all = 0;
	int sc[NPCOLS * 3], nc = 0, c;
	char buf[NAME_MAX + 64];

	for (i = 0; i < total_n; i++)
		all += ents[i].st.total.cycles;
	if (o->format == F_PROM) {
		struct es_stats **sts = calloc(n + 1, sizeof(*sts));
		size_t *nrows = calloc(n + 1, sizeof(*nrows));
		char **extras = calloc(n + 1, sizeof(*extras));

		if (!sts || !nrows || !extras)
			die(EXIT_RUNTIME, "out of memory");
		for (i = 0; i < n; i++) {
			char comm[sizeof(ents[i].comm) * 2];

			/* read_comm() left no control byte in the name. */
			prom_escape(comm, ents[i].comm);
			sts[i] = &ents[i].st;
			nrows[i] = ents[i].st.nrows;
			if (asprintf(&extras[i], ",vm=\"%s\",comm=\"%s\"", ents[i].vm, comm) < 0)
				die(EXIT_RUNTIME, "out of memory");
		}
		print_prometheus_of(sts, nrows, extras, n);
		for (i = 0; i < n; i++)
			free(extras[i]);
		free(extras);
		free(nrows);
		free(sts);
		return;
	}
	ocyc.unit = U_CYCLES;
	ons.unit = U_NS;
	for (c = 0; c < NPCOLS; c++) {
		if ((c == PC_VCPU && o->per != PER_VCPU) || (c == PC_RATE && !live))
			continue;
		so[nc] = o;
		sc[nc++] = c;
		if (o->format == F_JSON && pcols[c].kind == K_TIME) {
			so[nc] = &ocyc;
			sc[nc++] = c | PC_CYCLES;
			so[nc] = &ons;
			sc[nc++] = c | PC_NS;
		}
	}
	if (o->format == F_CSV) {
		if (o->csv_meta)
			csv_meta(o, total_n ? &ents[0].st : NULL, 0);
		if (!o->noheadings) {
			for (c = 0; c < nc; c++)
				printf("%s%s", c ? "," : "", pcols[sc[c] & PC_MASK].name);
			putchar('\n');
		}
		for (i = 0; i < n; i++) {
			for (c = 0; c < nc; c++) {
				if (c)
					putchar(',');
				if (ent_cell(so[c], &ents[i], all, sc[c] & PC_MASK, buf, sizeof(buf)))
					csv_field(buf);
			}
			putchar('\n');
		}
		return;
	}
	tb = scols_new_table();
	if (!tb)
		die(EXIT_RUNTIME, "out of memory");
	scols_table_enable_noheadings(tb, o->noheadings);
	if (o->format == F_JSON) {
		scols_table_enable_json(tb, 1);
		scols_table_set_name(tb, o->per == PER_VM ? "vms" : "vcpus");
	}
	for (c = 0; c < nc; c++) {
		const struct colinfo *ci = &pcols[sc[c] & PC_MASK];
		char name[32];
		struct libscols_column *cl;

		snprintf(name, sizeof(name), "%s%s", ci->name, sc[c] & PC_CYCLES ?
			 "_CYCLES" : sc[c] & PC_NS ? "_NS" : "");
		cl = scols_table_new_column(tb, name, ci->whint, ci->flags);

		if (!cl)
			die(EXIT_RUNTIME, "out of memory");
		if (o->format == F_JSON)
			scols_column_set_json_type(cl, ci->kind == K_TEXT ?
						   SCOLS_JSON_STRING : SCOLS_JSON_NUMBER);
	}
	for (i = 0; i < n; i++) {
		struct libscols_line *ln = scols_table_new_line(tb, NULL);

		if (!ln)
			die(EXIT_RUNTIME, "out of memory");
		for (c = 0; c < nc; c++)
			if (ent_cell(so[c], &ents[i], all, sc[c] & PC_MASK, buf, sizeof(buf)) &&
			    scols_line_set_data(ln, c, buf))
				die(EXIT_RUNTIME, "out of memory");
	}
	print_table(o, tb, total_n ? &ents[0].st : NULL, 0);
	scols_unref_table(tb);
}

static void per(const struct opts *o)
{
	struct ent *ents;
	size_t n = gather(o, &ents, true);

	print_ents(o, ents, n, false);
	free_ents(ents, n);
}

/* --per with --interval: each VM's or vCPU's change since the last read. */
static void per_live(const struct opts *o)
{
	struct ent *prev, *cur, *delta;
	size_t np, nc, i;
	long n;

	live_signals();
	np = gather(o, &prev, true);
	for (n = 0; !stop && (o->count < 0 || n < o->count); n++) {
		if (!live_wait(o))
			break;
		nc = gather(o, &cur, false);
		delta = calloc(nc + 1, sizeof(*delta));
		if (!delta)
			die(EXIT_RUNTIME, "out of memory");
		for (i = 0; i < nc; i++) {
			struct ent *p = bsearch(&cur[i], prev, np, sizeof(*prev), cmp_ent_id);
			struct ent *d = &delta[i];

			*d = cur[i];
			/* A VM that appeared: all of it is new. */
			if (p) {
				d->reset = !stats_delta(&p->st, &cur[i].st, &d->st);
			} else {
				stats_dup(&cur[i].st, &d->st);
				d->reset = true;
			}
			es_finish(&d->st);
			d->seconds = (double)(d->reset ? cur[i].st.since_ns :
					      cur[i].st.since_ns - p->st.since_ns) / 1e9;
		}
		if (o->format == F_TABLE) {
			size_t fresh = 0;

			for (i = 0; i < nc; i++)
				fresh += delta[i].reset;
			live_stamp(n);
			printf("  %zu %s", nc, o->per == PER_VM ? "VMs" : "vCPUs");
			if (fresh)
				printf(" (%zu new or reset: counted from their start)", fresh);
			putchar('\n');
		}
		print_ents(o, delta, nc, true);
		fflush(stdout);
		for (i = 0; i < nc; i++)
			es_free(&delta[i].st);
		free(delta);
		free_ents(prev, np);
		prev = cur;
		np = nc;
	}
	free_ents(prev, np);
}

/* Write "0" to the reset file @path, opened as @fd. */
static void write_reset(int fd, const char *path)
{
	ssize_t n = write(fd, "0\n", 2);
	int err = n == 2 ? 0 : n < 0 ? errno : EIO;

	if (close(fd) && !err)
		err = errno;
	if (err)
		die(EXIT_RUNTIME, "cannot reset %s: %s", path, strerror(err));
}

/*
 * Reset the scope of the exit_stats file @stats: write "0" to the
 * exit_stats_reset next to it, or, on a kernel without one (the first
 * version of the files), to exit_stats itself.  Never O_CREAT: debugfs
 * cannot create files, and would fail with EACCES instead of ENOENT.
 */
static void reset_one(const char *stats)
{
	struct stat sb;
	char *path;
	int fd, err;

	if (asprintf(&path, "%s" RESET_SUFFIX, stats) < 0)
		die(EXIT_RUNTIME, "out of memory");
	fd = open(path, O_WRONLY | O_CLOEXEC);
	err = errno;
	if (fd < 0 && err == ENOENT) {
		if (stat(stats, &sb))
			die_open(stats, errno);	/* no such VM or vCPU */
		free(path);
		path = strdup(stats);
		if (!path)
			die(EXIT_RUNTIME, "out of memory");
		fd = open(path, O_WRONLY | O_CLOEXEC);
		err = errno;
		if (fd < 0 && err == EPERM)
			die_eperm("cannot reset ", path,
				  "this kernel has the first version of exit_stats (no exit_stats_reset, files of mode 0600), which lockdown refuses to read or reset: boot without lockdown to use them");
	} else if (fd < 0 && err == EPERM) {
		die_eperm("cannot reset ", path,
			  "lockdown refuses resetting exit_stats, reading still works: kvm-exitstat -i SEC shows the changes without a reset");
	}
	if (fd < 0 && err == EACCES)
		die(EXIT_RUNTIME, "cannot reset %s: %s (resetting is for root only: run as root)",
		    path, strerror(err));
	if (fd < 0)
		die(EXIT_RUNTIME, "cannot reset %s: %s", path, strerror(err));
	write_reset(fd, path);
	free(path);
}

static void reset(const struct opts *o)
{
	char **paths;
	size_t i, n = scope_paths(o, &paths);

	for (i = 0; i < n; i++) {
		reset_one(paths[i]);
		free(paths[i]);
	}
	free(paths);
}

static void close_stdout(void)
{
	if (fflush(stdout) || ferror(stdout) || fclose(stdout))
		die(EXIT_RUNTIME, "write error: %s", strerror(errno ? errno : EIO));
}

int main(int argc, char **argv)
{
	enum { OPT_VM = 256, OPT_VCPU, OPT_RAW, OPT_CSV, OPT_PROM, OPT_RESET,
	       OPT_MODE, OPT_DETAIL, OPT_DETAIL_FILE, OPT_HIST, OPT_PER, OPT_SYSROOT,
	       OPT_CSV_META };
	static const struct option longopts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "vm", required_argument, NULL, OPT_VM },
		{ "vcpu", required_argument, NULL, OPT_VCPU },
		{ "file", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "sort", required_argument, NULL, 's' },
		{ "reverse", no_argument, NULL, 'r' },
		{ "top", required_argument, NULL, 't' },
		{ "skip-zero", no_argument, NULL, 'z' },
		{ "noheadings", no_argument, NULL, 'n' },
		{ "unit", required_argument, NULL, 'u' },
		{ "raw", no_argument, NULL, OPT_RAW },
		{ "json", no_argument, NULL, 'J' },
		{ "csv", no_argument, NULL, OPT_CSV },
		{ "csv-meta", no_argument, NULL, OPT_CSV_META },
		{ "prometheus", no_argument, NULL, OPT_PROM },
		{ "interval", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'c' },
		{ "reset", no_argument, NULL, OPT_RESET },
		{ "guest-mode", required_argument, NULL, OPT_MODE },
		{ "detail", no_argument, NULL, OPT_DETAIL },
		{ "detail-file", required_argument, NULL, OPT_DETAIL_FILE },
		{ "hist", no_argument, NULL, OPT_HIST },
		{ "per", required_argument, NULL, OPT_PER },
		{ "sysroot", required_argument, NULL, OPT_SYSROOT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct opts o = { .pid = -1, .vcpu = -1, .top = -1, .count = -1,
			  .unit = U_AUTO, .sort = S_COUNT };
	const char *outlist = NULL;
	bool unit_set = false;
	int nformats = 0, c;
	size_t i;

	atexit(close_stdout);
	while ((c = getopt_long(argc, argv, "p:f:o:s:rt:znu:Ji:c:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': o.pid = parse_long(optarg, "PID", 1, INT_MAX); break;
		case OPT_VM:
			if (!*optarg || strchr(optarg, '/') || !strcmp(optarg, ".") ||
			    !strcmp(optarg, ".."))
				die(EXIT_USAGE, "invalid VM '%s' (expected PID-FD)", optarg);
			o.vm = optarg;
			break;
		case OPT_VCPU: o.vcpu = parse_long(optarg, "vCPU", 0, INT_MAX); break;
		case 'f': o.file = optarg; break;
		case 'o': outlist = optarg; break;
		case 's': parse_sort(&o, optarg); break;
		case 'r': o.reverse = !o.reverse; break;
		case 't': o.top = parse_long(optarg, "row count", 0, LONG_MAX); break;
		case 'z': o.skip_zero = true; break;
		case 'n': o.noheadings = true; break;
		case 'u':
			for (i = 0; i < 4; i++)
				if (!strcmp(optarg, unit_names[i]))
					break;
			if (i == 4)
				die(EXIT_USAGE, "unknown unit '%s' (cycles, ns, us or ms)", optarg);
			o.unit = i;
			unit_set = true;
			break;
		case OPT_RAW: o.raw = true; break;
		case 'J': o.format = F_JSON; nformats++; break;
		case OPT_CSV: o.format = F_CSV; nformats++; break;
		case OPT_CSV_META: o.csv_meta = true; break;
		case OPT_PROM: o.format = F_PROM; nformats++; break;
		case 'i': {
			char *end;

			errno = 0;
			o.interval = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(o.interval >= 0.01) ||
			    o.interval > 86400)
				die(EXIT_USAGE, "invalid interval '%s' (0.01..86400 seconds)", optarg);
			break;
		}
		case 'c': o.count = parse_long(optarg, "count", 1, LONG_MAX); break;
		case OPT_RESET: o.reset = true; break;
		case OPT_MODE: o.mode = parse_mode(optarg); break;
		case OPT_DETAIL: o.detail = true; break;
		case OPT_DETAIL_FILE: o.detail = true; o.detail_file = optarg; break;
		case OPT_HIST: o.hist = true; break;
		case OPT_PER:
			if (!strcmp(optarg, "vm"))
				o.per = PER_VM;
			else if (!strcmp(optarg, "vcpu"))
				o.per = PER_VCPU;
			else
				die(EXIT_USAGE, "unknown --per '%s' (vm or vcpu)", optarg);
			break;
		case OPT_SYSROOT:
			if (!*optarg)
				die(EXIT_USAGE, "--sysroot needs a directory");
			sysroot = optarg;
			if (snprintf(kvm_dir, sizeof(kvm_dir), "%s" KVM_DIR, sysroot) >=
			    (int)sizeof(kvm_dir))
				die(EXIT_USAGE, "--sysroot: path too long");
			break;
		case 'h': usage(stdout); break;
		case 'V': printf("%s %s\n", prog, VERSION); return EXIT_OK;
		default:
			fprintf(stderr, "Try '%s --help' for more information.\n", prog);
			return EXIT_USAGE;
		}
	}
	if (optind < argc && !o.hist)
		die(EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
	if (optind < argc)
		o.hist_reasons = argv + optind;
	if (o.per && (o.file || o.detail || o.hist || o.reset || outlist))
		die(EXIT_USAGE, "--per reads the VMs of debugfs: no --file, --detail, --hist, --reset or --output");
	if (o.per == PER_VM && o.vcpu >= 0)
		die(EXIT_USAGE, "--vcpu selects a vCPU: use it with --per vcpu, not --per vm");
	if (o.per == PER_VCPU && o.format == F_PROM)
		die(EXIT_USAGE, "--prometheus has per-VM series at most (--per vm): a series per vCPU would be too many");
	if (o.per && o.sort_set && o.sort != S_COUNT && o.sort != S_TOTAL &&
	    o.sort != S_AVG && o.sort != S_NAME)
		die(EXIT_USAGE, "with --per, sort by count, total, avg or name");
	if (o.hist && (o.format == F_CSV || o.format == F_PROM || o.detail ||
		       o.interval > 0 || o.reset || outlist))
		die(EXIT_USAGE, "--hist works with the table and --json only (no --csv, --prometheus, --detail, --interval, --reset or --output)");
	if (nformats > 1)
		die(EXIT_USAGE, "--json, --csv and --prometheus are mutually exclusive");
	if (o.csv_meta && o.format != F_CSV)
		die(EXIT_USAGE, "--csv-meta goes with --csv");
	if (o.file && (o.pid >= 0 || o.vm || o.vcpu >= 0))
		die(EXIT_USAGE, "--file and --pid/--vm/--vcpu are mutually exclusive");
	if (o.pid >= 0 && o.vm)
		die(EXIT_USAGE, "--pid and --vm are mutually exclusive");
	if (o.vcpu >= 0 && !o.vm)
		die(EXIT_USAGE, "--vcpu needs --vm");
	if (o.raw && unit_set && o.unit != U_CYCLES)
		die(EXIT_USAGE, "--raw shows cycles: it cannot be combined with --unit %s",
		    unit_names[o.unit]);
	if (o.raw)
		o.unit = U_CYCLES;
	if (o.count >= 0 && o.interval == 0)
		die(EXIT_USAGE, "--count needs --interval");
	if (o.reset && (o.file || o.interval > 0 || nformats || outlist))
		die(EXIT_USAGE, "--reset only takes a scope (--pid, --vm, --vcpu)");
	if (o.format == F_PROM && (outlist || o.noheadings))
		die(EXIT_USAGE, "--prometheus has fixed output: no --output or --noheadings");
	if (o.interval > 0 && o.file && !strcmp(o.file, "-"))
		die(EXIT_USAGE, "--interval cannot re-read stdin");
	if (o.detail && (o.format == F_CSV || o.format == F_PROM || o.interval > 0 ||
			 o.reset))
		die(EXIT_USAGE, "--detail works with the table and --json only (no --csv, --prometheus, --interval or --reset)");
	if (o.detail && o.file && !o.detail_file)
		die(EXIT_USAGE, "with --file, give the sub-reasons with --detail-file FILE");
	if (o.detail_file && !o.file)
		die(EXIT_USAGE, "--detail-file needs --file (a live scope reads its exit_stats_detail)");
	if (o.detail_file && !strcmp(o.detail_file, "-") && !strcmp(o.file, "-"))
		die(EXIT_USAGE, "--file and --detail-file cannot both read stdin");

	if (o.interval > 0) {
		memcpy(o.cols, live_cols, sizeof(live_cols));
		o.ncols = sizeof(live_cols) / sizeof(live_cols[0]);
	} else {
		memcpy(o.cols, default_cols, sizeof(default_cols));
		o.ncols = sizeof(default_cols) / sizeof(default_cols[0]);
	}
	if (outlist)
		parse_columns(&o, outlist);

	if (o.reset) {
		reset(&o);
		return EXIT_OK;
	}
	if (o.per && o.interval > 0) {
		per_live(&o);
	} else if (o.per) {
		per(&o);
	} else if (o.interval > 0) {
		live(&o);
	} else {
		struct es_stats st;
		struct es_detail d;
		struct view v = { &o, &st, 0, NULL };

		read_scope(&o, &st);
		if (o.hist) {
			int status = print_hists(&o, &st);

			es_free(&st);
			return status;
		}
		if (o.detail) {
			read_detail(&o, &st, &d);
			v.detail = &d;
		}
		v.seconds = (double)st.since_ns / 1e9;
		print_stats(&v);
		if (o.detail)
			es_detail_free(&d);
		es_free(&st);
	}
	return EXIT_OK;
}
