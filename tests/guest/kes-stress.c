// SPDX-License-Identifier: GPL-2.0-only
/*
 * kes-stress - a bounded storm against the exit_stats files, then exact
 * counts.
 *
 * For --seconds, all at once: --vms threads that each create a VM with 1 to
 * --max-vcpus vCPUs, run a guest that loops over CPUID, a port write to
 * user space, RDMSR, WRMSR and HLT on every vCPU, and destroy the VM, again
 * and again; --readers threads that read the host's, every live VM's and
 * every live vCPU's exit_stats and check each read on the spot; --resetters
 * threads that reset a random scope at random intervals; and a thread that
 * switches kvm.exit_stats off and on at random intervals.  Every thread
 * notes the CPU it runs on, and every read, reset and switch notes whether
 * a vCPU thread was inside KVM_RUN on another CPU meanwhile: the output
 * shows that they overlapped.
 *
 * Then it stops everything, switches accounting on, resets the host, runs
 * one VM with --final-vcpus vCPUs at once and checks exact counts in the
 * VM's, every vCPU's and the host's file, and that the VM's TOTAL equals
 * KVM's own `exits`.  Every broken rule prints a "violation" line; the
 * exit status is 1 if there was any.  --baseline reads and clears KVM's
 * own files instead: the same load on a kernel without the series.
 * --faults makes allocations fail instead (see faults()).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "guest.h"

#define DEBUGFS		"/sys/kernel/debug/kvm"
#define PARAM		"/sys/module/kvm/parameters/exit_stats"
#define LOG_PARAM	"/sys/module/kvm/parameters/exit_stats_log"
#define MEM_SIZE	0x10000
#define CODE_GPA	0x1000
#define PARAM_GPA	0x500
#define PORT_IO		0x99
#define PORT_DONE	0xf1
#define MSR_MISC_ENABLE	0x1a0
#define MAX_CPUS	64
#define MAX_THREADS	64
#define MAX_ROWS	256
#define MAX_BUCKETS	256
#define FILE_MAX	(64 * 1024)
#define MAX_REPORTED	20

/* Parameter block at PARAM_GPA: loops, then the MSR value to write. */
struct params {
	uint32_t loops, misc_lo, misc_hi;
};

extern const unsigned char guest_code[], guest_code_end[];

/* Each loop: CPUID, OUT to user space, RDMSR, WRMSR, HLT; then "done". */
asm(".pushsection .rodata\n"
    ".code32\n"
    "guest_code:\n"
    "	mov 0x500, %edi\n"
    "1:	test %edi, %edi\n"
    "	jz 2f\n"
    "	xor %eax, %eax\n"
    "	cpuid\n"
    "	mov $0x99, %dx\n"
    "	out %al, %dx\n"
    "	mov $0x1a0, %ecx\n"
    "	rdmsr\n"
    "	mov 0x504, %eax\n"
    "	mov 0x508, %edx\n"
    "	wrmsr\n"
    "	hlt\n"
    "	dec %edi\n"
    "	jmp 1b\n"
    "2:	mov $0xf1, %dx\n"
    "	out %al, %dx\n"
    "	jmp 2b\n"
    "guest_code_end:\n"
    ".code64\n"
    ".popsection\n");

/* What the whole run counts, for the summary. */
static struct {
	atomic_ulong vms, vcpus, runs, loops, vm_errors;
	atomic_ulong reads[3], reads_overlap, reads_gone, rows_checked;
	atomic_ulong resets[3], resets_overlap, resets_gone;
	atomic_ulong toggles, toggles_overlap;
	atomic_ulong violations;
	atomic_ulong cpu[4][MAX_CPUS];	/* role x CPU: operations */
} st;

enum role { ROLE_VCPU, ROLE_READER, ROLE_RESETTER, ROLE_TOGGLER };
static const char *const role_names[] = { "vcpu", "reader", "resetter", "toggler" };
static const char *const scope_names[] = { "host", "vm", "vcpu" };

/* How many vCPU threads are inside KVM_RUN, per CPU they entered it on. */
static atomic_int in_run[MAX_CPUS];
/* Resets and switches: how many are running, how many have begun. */
static atomic_ulong changes_busy, changes_begun;
static atomic_bool stop;

static unsigned int opt_seconds = 60, opt_vms = 3, opt_max_vcpus = 3;
static unsigned int opt_readers = 2, opt_resetters = 1, opt_final_vcpus = 4;
static unsigned int opt_loops = 200, opt_toggle_ms = 500, opt_final_loops = 300;
static bool opt_baseline, opt_no_toggle, opt_check, svm;
static unsigned int opt_faults;
static int kvm_fd, run_size;
static struct kvm_cpuid2 *cpuid;
static struct params guest_params;

static void violation(const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&st.violations, 1) >= MAX_REPORTED)
		return;
	va_start(ap, fmt);
	printf("violation: ");
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
	va_end(ap);
}

static int cpu_now(enum role role)
{
	int cpu = sched_getcpu();

	if (cpu < 0 || cpu >= MAX_CPUS)
		cpu = 0;
	atomic_fetch_add(&st.cpu[role][cpu], 1);
	return cpu;
}

/* Is a vCPU thread inside KVM_RUN on a CPU other than @cpu? */
static bool vcpu_elsewhere(int cpu)
{
	for (int i = 0; i < MAX_CPUS; i++)
		if (i != cpu && atomic_load(&in_run[i]) > 0)
			return true;
	return false;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static unsigned int rnd(unsigned int *seed, unsigned int n)
{
	return n ? rand_r(seed) % n : 0;
}

static int write_file(const char *path, const char *val);
static ssize_t slurp(const char *path, char *buf, size_t size);

/*
 * /proc/thread-self/fail-nth: the n-th fallible allocation of this thread
 * from now on fails.
 */
static __thread int fail_fd = -1;

static void fail_nth(unsigned int n)
{
	char v[16];
	int len = snprintf(v, sizeof(v), "%u", n);

	/* Opened once: opening it allocates, which would consume the n. */
	if (fail_fd < 0)
		fail_fd = open("/proc/thread-self/fail-nth", O_RDWR);
	if (fail_fd < 0 || pwrite(fail_fd, v, len, 0) != len)
		err(1, "/proc/thread-self/fail-nth");
}

/* True if the failure was injected; disarms it if it was not. */
static bool fail_fired(void)
{
	char v[16] = "";

	if (pread(fail_fd, v, sizeof(v) - 1, 0) < 0)
		err(1, "/proc/thread-self/fail-nth");
	if (atoi(v) == 0)
		return true;
	fail_nth(0);
	return false;
}

/* ---------------------------------------------------------------- VMs */

struct vm {
	int fd;
	void *mem;
	char dir[96];
};

struct vcpu {
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	uint32_t loops;
	unsigned long io, hlt;
	const char *error;
	int errnum;		/* of a failed KVM_RUN, else 0 */
};

/*
 * Create a VM; with @fail, the fail-th allocation of KVM_CREATE_VM fails,
 * and *@fired says whether it did.
 */
static int vm_create_nth(struct vm *vm, unsigned int fail, bool *fired)
{
	struct kvm_userspace_memory_region region = { 0 };

	if (fail)
		fail_nth(fail);
	vm->fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (fail)
		*fired = fail_fired();
	if (vm->fd < 0)
		return -errno;
	snprintf(vm->dir, sizeof(vm->dir), DEBUGFS "/%d-%d", getpid(), vm->fd);
	vm->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (vm->mem == MAP_FAILED)
		err(1, "mmap guest memory");
	memcpy((char *)vm->mem + CODE_GPA, guest_code,
	       guest_code_end - guest_code);
	memcpy((char *)vm->mem + PARAM_GPA, &guest_params, sizeof(guest_params));
	region.memory_size = MEM_SIZE;
	region.userspace_addr = (uintptr_t)vm->mem;
	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		err(1, "KVM_SET_USER_MEMORY_REGION");
	return 0;
}

static int vm_create(struct vm *vm)
{
	return vm_create_nth(vm, 0, NULL);
}

static void vm_destroy(struct vm *vm)
{
	close(vm->fd);
	munmap(vm->mem, MEM_SIZE);
}

/* Create a vCPU; @fail and @fired as for vm_create_nth(). */
static int vcpu_create_nth(struct vm *vm, struct vcpu *v, int id,
			   unsigned int fail, bool *fired)
{
	if (fail)
		fail_nth(fail);
	v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, id);
	if (fail)
		*fired = fail_fired();
	if (v->fd < 0)
		return -errno;
	v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->fd, 0);
	if (v->run == MAP_FAILED)
		err(1, "mmap kvm_run");
	if (ioctl(v->fd, KVM_SET_CPUID2, cpuid) < 0)
		err(1, "KVM_SET_CPUID2");
	set_protected_mode(v->fd);
	set_rip(v->fd, CODE_GPA);
	return 0;
}

static int vcpu_create(struct vm *vm, struct vcpu *v, int id)
{
	return vcpu_create_nth(vm, v, id, 0, NULL);
}

static void vcpu_destroy(struct vcpu *v)
{
	munmap(v->run, run_size);
	close(v->fd);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;

	for (;;) {
		int cpu = cpu_now(ROLE_VCPU), r;

		atomic_fetch_add(&in_run[cpu], 1);
		r = ioctl(v->fd, KVM_RUN, 0);
		atomic_fetch_sub(&in_run[cpu], 1);
		atomic_fetch_add(&st.runs, 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			v->errnum = errno;
			v->error = strerror(errno);
			return NULL;
		}
		switch (v->run->exit_reason) {
		case KVM_EXIT_IO:
			if (v->run->io.port == PORT_DONE)
				return NULL;
			if (v->run->io.port != PORT_IO) {
				v->error = "unexpected port";
				return NULL;
			}
			v->io++;
			break;
		case KVM_EXIT_HLT:
			v->hlt++;
			break;
		default:
			v->error = "unexpected exit to user space";
			return NULL;
		}
	}
}

/* Run the guest on @n vCPUs of @vm at once, @loops loops each. */
static int vm_run(struct vm *vm, struct vcpu *vcpus, unsigned int n,
		  uint32_t loops)
{
	struct params p = guest_params;
	unsigned int i;
	int bad = 0;

	p.loops = loops;
	memcpy((char *)vm->mem + PARAM_GPA, &p, sizeof(p));
	for (i = 0; i < n; i++)
		if (pthread_create(&vcpus[i].thread, NULL, vcpu_thread, &vcpus[i]))
			errx(1, "pthread_create failed");
	for (i = 0; i < n; i++) {
		pthread_join(vcpus[i].thread, NULL);
		if (vcpus[i].error) {
			violation("%s vcpu%u: %s", vm->dir, i, vcpus[i].error);
			bad = 1;
		} else if (vcpus[i].io != loops || vcpus[i].hlt != loops) {
			violation("%s vcpu%u: %lu port writes and %lu HLT for %u loops",
				  vm->dir, i, vcpus[i].io, vcpus[i].hlt, loops);
			bad = 1;
		}
	}
	return bad;
}

/* Create, run and destroy VMs until the end: the churn. */
static void *churn_thread(void *arg)
{
	unsigned int seed = (uintptr_t)arg * 7919 + 1;
	struct vcpu vcpus[16];

	while (!atomic_load(&stop)) {
		unsigned int n = 1 + rnd(&seed, opt_max_vcpus), i, made = 0;
		struct vm vm;
		int r = vm_create(&vm);

		if (r) {
			violation("KVM_CREATE_VM: %s", strerror(-r));
			atomic_fetch_add(&st.vm_errors, 1);
			usleep(10000);
			continue;
		}
		atomic_fetch_add(&st.vms, 1);
		memset(vcpus, 0, sizeof(vcpus));
		for (i = 0; i < n; i++) {
			r = vcpu_create(&vm, &vcpus[i], i);
			if (r) {
				violation("KVM_CREATE_VCPU: %s", strerror(-r));
				break;
			}
			made++;
		}
		atomic_fetch_add(&st.vcpus, made);
		if (made) {
			uint32_t loops = 1 + rnd(&seed, opt_loops);

			vm_run(&vm, vcpus, made, loops);
			atomic_fetch_add(&st.loops, (unsigned long)loops * made);
		}
		for (i = 0; i < made; i++)
			vcpu_destroy(&vcpus[i]);
		vm_destroy(&vm);
	}
	return NULL;
}

/* ---------------------------------------------------------- the files */

struct row {
	char reason[16], name[48];
	uint64_t count, cycles, min, avg, max, fastpath;
	uint64_t hist[MAX_BUCKETS];
};

struct stats {
	unsigned int nrows, buckets;
	struct row rows[MAX_ROWS];	/* the last one is TOTAL */
};

/* Read a whole file; -errno if it cannot be opened or read. */
static ssize_t slurp(const char *path, char *buf, size_t size)
{
	size_t len = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -errno;
	while ((n = read(fd, buf + len, size - 1 - len)) > 0)
		len += n;
	if (n < 0) {
		n = -errno;
		close(fd);
		return n;
	}
	close(fd);
	buf[len] = 0;
	return len;
}

static const char *const header[] = {
	"# kvm_exit_stats 3", "# vendor ", "# clock tsc", "# tsc_khz ",
	"# since_reset_ns ", "# hist_buckets ", "# hist_min_shift ",
	"# hist_sub_shift ",
	"# reason name count cycles min avg max fastpath hist",
};

/*
 * Parse one exit_stats file and check it: the header, then rows whose
 * histogram adds up to their count, min <= avg <= max with avg the
 * cycles over the measured exits, no more fastpath exits than exits, and a
 * TOTAL that is the sum of the rows.
 * Returns an error message or NULL.
 */
static const char *check_stats(char *text, struct stats *s)
{
	static __thread char msg[160];
	char *save, *line = strtok_r(text, "\n", &save);
	unsigned int i, b;

	memset(s, 0, offsetof(struct stats, rows));
	for (i = 0; i < sizeof(header) / sizeof(header[0]); i++) {
		if (!line || strncmp(line, header[i], strlen(header[i])))
			return "bad header";
		if (i == 5 && sscanf(line, "# hist_buckets %u", &s->buckets) != 1)
			return "bad hist_buckets";
		line = strtok_r(NULL, "\n", &save);
	}
	if (!s->buckets || s->buckets > MAX_BUCKETS)
		return "bad hist_buckets";
	for (; line; line = strtok_r(NULL, "\n", &save)) {
		struct row *r = &s->rows[s->nrows];
		char hist[4096] = "";
		uint64_t sum = 0, measured;
		int f;

		if (s->nrows == MAX_ROWS)
			return "too many rows";
		memset(r, 0, sizeof(*r));
		f = sscanf(line, "%15s %47s %" SCNu64 " %" SCNu64 " %" SCNu64
			   " %" SCNu64 " %" SCNu64 " %" SCNu64 " %4095s",
			   r->reason, r->name, &r->count, &r->cycles, &r->min,
			   &r->avg, &r->max, &r->fastpath, hist);
		if (f < 8) {
			snprintf(msg, sizeof(msg), "bad row '%.100s'", line);
			return msg;
		}
		for (char *p = hist, *tok; *p; p = tok) {
			uint64_t c;
			int used;

			if (sscanf(p, "%u:%" SCNu64 "%n", &b, &c, &used) != 2 ||
			    b >= s->buckets || !c || r->hist[b])
				return "bad histogram";
			r->hist[b] = c;
			sum += c;
			tok = p + used;
			if (*tok == ',')
				tok++;
			else if (*tok)
				return "bad histogram";
		}
		s->nrows++;
		if (!strcmp(r->name, "TOTAL") && !r->count && !r->fastpath &&
		    f == 8)
			continue;	/* "- TOTAL 0 0 0 0 0 0" */
		if (r->fastpath > r->count) {
			snprintf(msg, sizeof(msg), "%s: fastpath %" PRIu64
				 " of %" PRIu64 " exits", r->name, r->fastpath,
				 r->count);
			return msg;
		}
		if (!r->count || sum != r->count) {
			snprintf(msg, sizeof(msg), "%s: count %" PRIu64
				 " but histogram %" PRIu64, r->name, r->count, sum);
			return msg;
		}
		measured = r->count - r->hist[0];
		if (measured ? r->avg != r->cycles / measured ||
			       r->min > r->avg || r->avg > r->max :
			       r->cycles || r->min || r->avg || r->max) {
			snprintf(msg, sizeof(msg), "%s: cycles %" PRIu64 " min %" PRIu64
				 " avg %" PRIu64 " max %" PRIu64 " for %" PRIu64
				 " measured", r->name, r->cycles, r->min, r->avg,
				 r->max, measured);
			return msg;
		}
	}
	if (!s->nrows || strcmp(s->rows[s->nrows - 1].name, "TOTAL"))
		return "no TOTAL row last";
	{
		struct row *t = &s->rows[s->nrows - 1], sum = { .min = UINT64_MAX };

		for (i = 0; i + 1 < s->nrows; i++) {
			struct row *r = &s->rows[i];

			if (!strcmp(r->name, "TOTAL"))
				return "two TOTAL rows";
			for (unsigned int j = 0; j < i; j++)
				if (!strcmp(s->rows[j].reason, r->reason) &&
				    !strcmp(s->rows[j].name, r->name))
					return "a reason shown twice";
			sum.count += r->count;
			sum.fastpath += r->fastpath;
			sum.cycles += r->cycles;
			if (r->count > r->hist[0]) {
				sum.min = sum.min < r->min ? sum.min : r->min;
				sum.max = sum.max > r->max ? sum.max : r->max;
			}
			for (b = 0; b < s->buckets; b++)
				sum.hist[b] += r->hist[b];
		}
		if (t->count != sum.count || t->cycles != sum.cycles ||
		    t->fastpath != sum.fastpath ||
		    memcmp(t->hist, sum.hist, sizeof(sum.hist))) {
			snprintf(msg, sizeof(msg), "TOTAL %" PRIu64 "/%" PRIu64
				 " but rows add up to %" PRIu64 "/%" PRIu64,
				 t->count, t->cycles, sum.count, sum.cycles);
			return msg;
		}
		if (t->count > t->hist[0] && (t->min < sum.min || t->max > sum.max))
			return "TOTAL min/max outside the rows'";
	}
	atomic_fetch_add(&st.rows_checked, s->nrows);
	return NULL;
}

static uint64_t row_count(const struct stats *s, const char *name)
{
	for (unsigned int i = 0; i < s->nrows; i++)
		if (!strcmp(s->rows[i].name, name))
			return s->rows[i].count;
	return 0;
}

static uint64_t total(const struct stats *s)
{
	return s->nrows ? s->rows[s->nrows - 1].count : 0;
}

/* The live VMs' directories and their vCPUs' (at most @max). */
static unsigned int list_dirs(char (*dirs)[128], unsigned int max, bool vcpus)
{
	unsigned int n = 0;
	DIR *d = opendir(DEBUGFS);
	struct dirent *e;

	if (!d)
		err(1, DEBUGFS);
	while ((e = readdir(d)) && n < max) {
		if (!strchr(e->d_name, '-') || e->d_name[0] == '.')
			continue;
		snprintf(dirs[n++], 128, DEBUGFS "/%.64s", e->d_name);
		if (!vcpus)
			continue;
		for (int i = 0; i < 16 && n < max; i++) {
			snprintf(dirs[n], 128, DEBUGFS "/%.64s/vcpu%d", e->d_name, i);
			if (access(dirs[n], F_OK))
				break;
			n++;
		}
	}
	closedir(d);
	return n;
}

static enum { SCOPE_HOST, SCOPE_VM, SCOPE_VCPU } scope_of(const char *dir)
{
	if (!strcmp(dir, DEBUGFS))
		return SCOPE_HOST;
	return strstr(dir, "/vcpu") ? SCOPE_VCPU : SCOPE_VM;
}

/* Read and check @dir/exit_stats; false if the file is gone. */
static bool read_checked(const char *dir, char *buf, struct stats *s)
{
	char path[160];
	const char *why;
	ssize_t n;
	int cpu = cpu_now(ROLE_READER);
	bool overlap = vcpu_elsewhere(cpu);

	/* The baseline reads KVM's own files in the same directories. */
	snprintf(path, sizeof(path), "%s/%s", dir, !opt_baseline ? "exit_stats" :
		 scope_of(dir) == SCOPE_VCPU ? "tsc-offset" : "exits");
	n = slurp(path, buf, FILE_MAX);
	/* KVM's own vCPU files of a VM being destroyed give EIO. */
	if (n == -ENOENT || (opt_baseline && n == -EIO)) {
		atomic_fetch_add(&st.reads_gone, 1);
		return false;
	}
	if (n < 0) {
		violation("read %s: %s", path, strerror(-n));
		return false;
	}
	atomic_fetch_add(&st.reads[scope_of(dir)], 1);
	if (overlap || vcpu_elsewhere(cpu))
		atomic_fetch_add(&st.reads_overlap, 1);
	if (opt_baseline)
		return false;
	why = check_stats(buf, s);
	if (why) {
		violation("%s: %s", path, why);
		return false;
	}
	return true;
}

/*
 * Read every scope as fast as possible.  The host's TOTAL may not go down
 * between two reads unless a reset or a switch began or ran meanwhile.
 */
static void *reader_thread(void *arg)
{
	char (*dirs)[128] = malloc(256 * 128);
	char *buf = malloc(FILE_MAX);
	struct stats *s = malloc(sizeof(*s));
	uint64_t last = 0, last_gen = ~0ull;

	(void)arg;
	if (!buf || !s || !dirs)
		err(1, "malloc");
	while (!atomic_load(&stop)) {
		uint64_t gen = atomic_load(&changes_begun);
		bool quiet = !atomic_load(&changes_busy);
		unsigned int n, i;

		if (read_checked(DEBUGFS, buf, s)) {
			quiet = quiet && !atomic_load(&changes_busy) &&
				gen == atomic_load(&changes_begun);
			if (quiet && gen == last_gen && total(s) < last)
				violation("host TOTAL went from %" PRIu64 " to %" PRIu64
					  " without a reset", last, total(s));
			last = total(s);
			last_gen = quiet ? gen : ~0ull;
		}
		n = list_dirs(dirs, 256, true);
		for (i = 0; i < n && !atomic_load(&stop); i++)
			read_checked(dirs[i], buf, s);
	}
	free(buf);
	free(s);
	free(dirs);
	return NULL;
}

static int write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY), r = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		r = -errno;
	close(fd);
	return r;
}

static void change_begin(void)
{
	atomic_fetch_add(&changes_busy, 1);
	atomic_fetch_add(&changes_begun, 1);
}

static void change_end(void)
{
	atomic_fetch_sub(&changes_busy, 1);
}

/* Reset a random scope every 0-20 ms. */
static void *resetter_thread(void *arg)
{
	unsigned int seed = (uintptr_t)arg * 104729 + 3;
	char (*dirs)[128] = malloc(256 * 128);

	if (!dirs)
		err(1, "malloc");
	while (!atomic_load(&stop)) {
		unsigned int n = list_dirs(dirs, 256, true);
		const char *dir = DEBUGFS;
		char path[160];
		int cpu, r;
		bool overlap;

		usleep(rnd(&seed, 20000));
		if (n && rnd(&seed, 4))
			dir = dirs[rnd(&seed, n)];
		/* The baseline clears KVM's exits of the host or a VM. */
		if (opt_baseline && scope_of(dir) == SCOPE_VCPU)
			*strstr(dir, "/vcpu") = 0;
		snprintf(path, sizeof(path), "%s/%s", dir,
			 opt_baseline ? "exits" : "exit_stats_reset");
		cpu = cpu_now(ROLE_RESETTER);
		overlap = vcpu_elsewhere(cpu);
		change_begin();
		r = write_file(path, "0");
		change_end();
		if (r == -ENOENT) {
			atomic_fetch_add(&st.resets_gone, 1);
			continue;
		}
		if (r) {
			violation("reset %s: %s", path, strerror(-r));
			continue;
		}
		atomic_fetch_add(&st.resets[scope_of(dir)], 1);
		if (overlap || vcpu_elsewhere(cpu))
			atomic_fetch_add(&st.resets_overlap, 1);
	}
	free(dirs);
	return NULL;
}

/*
 * Switch accounting off and on again every 0-2 --toggle-ms; every other
 * time, switch the kernel-log summaries on (every 3 exits) or off.
 */
static void *toggler_thread(void *arg)
{
	unsigned int seed = (uintptr_t)arg + 11, n = 0;

	while (!atomic_load(&stop)) {
		int cpu, r;
		bool overlap;

		usleep(rnd(&seed, 2000 * opt_toggle_ms));
		cpu = cpu_now(ROLE_TOGGLER);
		overlap = vcpu_elsewhere(cpu);
		change_begin();
		r = write_file(PARAM, "N");
		usleep(rnd(&seed, 1000 * opt_toggle_ms));
		if (!r)
			r = write_file(PARAM, "Y");
		if (!r && n++ % 2)
			r = write_file(LOG_PARAM, n % 4 == 2 ? "3" : "0");
		change_end();
		if (r) {
			violation("%s: %s", PARAM, strerror(-r));
			continue;
		}
		atomic_fetch_add(&st.toggles, 1);
		if (overlap || vcpu_elsewhere(cpu))
			atomic_fetch_add(&st.toggles_overlap, 1);
	}
	return NULL;
}

/* ------------------------------------------------------ exact counts */

/*
 * The five exits of the guest: @vcpus vCPUs ran @loops loops each, plus the
 * "done" port write.  SVM has one MSR exit for both directions.
 */
static int check_exact(const char *what, const struct stats *s,
		       uint64_t vcpus, uint64_t loops)
{
	static const char *const vmx_rows[] = {
		"CPUID", "IO_INSTRUCTION", "MSR_READ", "MSR_WRITE", "HLT" };
	static const char *const svm_rows[] = { "cpuid", "io", "msr", "hlt" };
	const uint64_t n = vcpus * loops;
	const uint64_t vmx_want[] = { n, n + vcpus, n, n, n };
	const uint64_t svm_want[] = { n, n + vcpus, 2 * n, n };
	const char *const *rows = svm ? svm_rows : vmx_rows;
	const uint64_t *want = svm ? svm_want : vmx_want;
	unsigned int i, nrows = svm ? 4 : 5;
	int bad = 0;

	for (i = 0; i < nrows; i++) {
		uint64_t got = row_count(s, rows[i]);

		if (got != want[i]) {
			violation("%s: %" PRIu64 " %s exits, want %" PRIu64, what,
				  got, rows[i], want[i]);
			bad = 1;
		}
	}
	return bad;
}

static uint64_t read_number(const char *path)
{
	char buf[64];
	ssize_t n = slurp(path, buf, sizeof(buf));

	if (n < 0) {
		violation("read %s: %s", path, strerror(-n));
		return 0;
	}
	return strtoull(buf, NULL, 10);
}

/* Quiesced: one VM, all vCPUs at once, exact counts in every scope. */
static void final_check(void)
{
	char *buf = malloc(FILE_MAX), path[160], what[160];
	struct stats *s = malloc(sizeof(*s)), *host = malloc(sizeof(*s));
	struct vcpu vcpus[64] = { 0 };
	uint64_t loops = opt_final_loops, n = opt_final_vcpus, exits;
	unsigned int i;
	struct vm vm;

	if (!buf || !s || !host)
		err(1, "malloc");
	if (write_file(PARAM, "Y") || (!opt_baseline && write_file(LOG_PARAM, "0")) ||
	    write_file(DEBUGFS "/exit_stats_reset", "0"))
		violation("cannot switch on and reset for the final check");
	if (vm_create(&vm))
		err(1, "KVM_CREATE_VM");
	for (i = 0; i < n; i++)
		if (vcpu_create(&vm, &vcpus[i], i))
			err(1, "KVM_CREATE_VCPU");
	vm_run(&vm, vcpus, n, loops);

	if (!read_checked(vm.dir, buf, s))
		violation("%s/exit_stats unreadable", vm.dir);
	printf("final vm %s vcpus %" PRIu64 " loops %" PRIu64 " vendor %s\n",
	       vm.dir, n, loops, svm ? "svm" : "vmx");
	check_exact("final VM", s, n, loops);
	snprintf(path, sizeof(path), "%s/exits", vm.dir);
	exits = read_number(path);
	printf("final vm TOTAL %" PRIu64 " exits %" PRIu64 "\n", total(s), exits);
	if (total(s) != exits)
		violation("final VM: TOTAL %" PRIu64 " but KVM's exits %" PRIu64,
			  total(s), exits);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/vcpu%u", vm.dir, i);
		snprintf(what, sizeof(what), "final vcpu%u", i);
		if (!read_checked(path, buf, s))
			violation("%s/exit_stats unreadable", path);
		check_exact(what, s, 1, loops);
	}
	for (i = 0; i < n; i++)
		vcpu_destroy(&vcpus[i]);
	vm_destroy(&vm);
	/* The host keeps the VM's exits after it is gone. */
	if (!read_checked(DEBUGFS, buf, host))
		violation("host exit_stats unreadable");
	check_exact("final host", host, n, loops);
	printf("final host TOTAL %" PRIu64 "\n", total(host));
	free(buf);
	free(s);
	free(host);
}

/* ----------------------------------------------------- fault injection */

/*
 * Allocation failures with /proc/thread-self/fail-nth: the n-th fallible
 * allocation of this thread fails.  Each site is tried with n = 1, 2, ...
 * until an attempt makes fewer than n allocations; every attempt must end
 * in a clean error or succeed (the kernel tolerated the failure), and the
 * counters must stay consistent.
 */
struct site {
	const char *name;
	unsigned int tried, failed, tolerated, lost;
};

/* An error of an attempt with a failure injected: ENOMEM, nothing else. */
static void site_result(struct site *site, unsigned int n, int r)
{
	site->tried++;
	if (!r) {
		site->tolerated++;
		return;
	}
	site->failed++;
	if (r != -ENOMEM)
		violation("fault %s n=%u: %s, not ENOMEM", site->name, n,
			  strerror(-r));
}

static void site_report(const struct site *site)
{
	printf("fault %s attempts %u enomem %u tolerated %u lost_reasons %u\n",
	       site->name, site->tried, site->failed, site->tolerated,
	       site->lost);
}

/* Run @v alone until "done", with the n-th allocation failing if @n. */
struct fault_run {
	struct vcpu *v;
	unsigned int n;
	int r;
	bool fired;
};

static void *fault_vcpu_thread(void *arg)
{
	struct fault_run *f = arg;

	if (f->n)
		fail_nth(f->n);
	vcpu_thread(f->v);
	f->fired = f->n && fail_fired();
	/* An unexpected exit to user space counts as EIO. */
	f->r = !f->v->error ? 0 : f->v->errnum ? -f->v->errnum : -EIO;
	return NULL;
}

static bool fault_run(struct vm *vm, struct vcpu *v, unsigned int n,
		      int *r)
{
	struct fault_run f = { .v = v, .n = n };
	struct params p = guest_params;
	pthread_t t;

	p.loops = 5;
	memcpy((char *)vm->mem + PARAM_GPA, &p, sizeof(p));
	/* From the start of the guest program, again. */
	set_rip(v->fd, CODE_GPA);
	v->error = NULL;
	v->errnum = 0;
	v->io = v->hlt = 0;
	if (pthread_create(&t, NULL, fault_vcpu_thread, &f))
		errx(1, "pthread_create failed");
	pthread_join(t, NULL);
	*r = f.r;
	return f.fired;
}

/* The VM's TOTAL must equal KVM's exits, failures or not. */
static unsigned int check_vm_total(struct vm *vm, const char *what,
				   unsigned int n, char *buf, struct stats *s)
{
	char path[160];
	uint64_t exits;

	snprintf(path, sizeof(path), "%s/exits", vm->dir);
	if (access(vm->dir, F_OK)) {
		violation("fault %s n=%u: no %s", what, n, vm->dir);
		return 0;
	}
	/* KVM does without a stat file it could not create. */
	if (access(path, F_OK))
		return 0;
	exits = read_number(path);
	if (!read_checked(vm->dir, buf, s))
		return 0;
	if (total(s) != exits)
		violation("fault %s n=%u: TOTAL %" PRIu64 " but exits %" PRIu64,
			  what, n, total(s), exits);
	return row_count(s, "ALLOC_FAILED") ? 1 : 0;
}

/* [start, end) of the kernel function @name, from /proc/kallsyms. */
static bool kernel_function(const char *name, unsigned long *start,
			    unsigned long *end)
{
	FILE *f = fopen("/proc/kallsyms", "r");
	char line[256], sym[128];
	unsigned long addr;

	if (!f)
		err(1, "/proc/kallsyms");
	*start = 0;
	*end = ~0ul;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx %*c %127s", &addr, sym) != 2)
			continue;
		if (!strcmp(sym, name))
			*start = addr;
		else if (*start && addr > *start && addr < *end)
			*end = addr;
	}
	fclose(f);
	return *start && *end != ~0ul;
}

#define FAIL_PAGE "/sys/kernel/debug/fail_page_alloc/"

/*
 * Every page allocation for rows fails, and only those (the stack filter of
 * fail_page_alloc): the first two reasons
 * of a vCPU fit in its header page, every further one is counted as
 * ALLOC_FAILED, and TOTAL still equals KVM's exits.
 */
static void row_failures(char *buf, struct stats *s, struct site *site)
{
	unsigned long start, end;
	char range[32];
	struct vcpu v;
	struct vm vm;
	int r;

	/*
	 * The function that allocates the pages of rows, which nothing but
	 * this vCPU calls meanwhile.  Not its callers: they tail-call it and
	 * each other, and a tail caller's frame is gone from the stack.
	 */
	if (!kernel_function("exit_stats_add_page", &start, &end))
		errx(1, "exit_stats_add_page not in /proc/kallsyms");
	snprintf(range, sizeof(range), "%#lx", start);
	write_file(FAIL_PAGE "require-start", range);
	snprintf(range, sizeof(range), "%#lx", end);
	write_file(FAIL_PAGE "require-end", range);
	write_file(FAIL_PAGE "times", "-1");
	write_file(FAIL_PAGE "interval", "1");
	write_file(FAIL_PAGE "probability", "100");

	if (vm_create(&vm) || vcpu_create(&vm, &v, 0))
		err(1, "creating a VM");
	fault_run(&vm, &v, 0, &r);
	write_file(FAIL_PAGE "probability", "0");
	site->tried++;
	if (r)
		violation("fault rows: the guest failed: %s", strerror(-r));
	check_vm_total(&vm, "rows", 1, buf, s);
	site->lost = row_count(s, "ALLOC_FAILED");
	site->tolerated += site->lost > 0;
	printf("fault rows: %u rows, ALLOC_FAILED %u of TOTAL %" PRIu64 "\n",
	       s->nrows, site->lost, total(s));
	if (!site->lost || s->nrows != 4)
		violation("fault rows: want 2 rows, ALLOC_FAILED and TOTAL");
	vcpu_destroy(&v);
	vm_destroy(&vm);

	write_file(FAIL_PAGE "times", "1");
	write_file(FAIL_PAGE "require-start", "0");
	write_file(FAIL_PAGE "require-end", "0xffffffffffffffff");

	/* And a vCPU after it counts exactly. */
	if (vm_create(&vm) || vcpu_create(&vm, &v, 0))
		err(1, "creating a VM");
	fault_run(&vm, &v, 0, &r);
	check_vm_total(&vm, "rows", 2, buf, s);
	check_exact("fault rows, afterwards", s, 1, 5);
	vcpu_destroy(&v);
	vm_destroy(&vm);
}

static void faults(unsigned int max)
{
	struct site vm_site = { .name = "create_vm" };
	struct site vcpu_site = { .name = "create_vcpu" };
	struct site run_site = { .name = "first_exits" };
	struct site read_site = { .name = "read" };
	struct site reset_site = { .name = "reset" };
	struct site rows_site = { .name = "rows" };
	struct site on_site = { .name = "switch_on" };
	char *buf = malloc(FILE_MAX);
	struct stats *s = malloc(sizeof(*s));
	struct vcpu v;
	struct vm vm;
	unsigned int n;
	int r;

	if (!buf || !s)
		err(1, "malloc");
	if (write_file(PARAM, "Y"))
		err(1, "%s", PARAM);

	/* KVM_CREATE_VM. */
	for (n = 1; n <= max; n++) {
		bool fired;

		r = vm_create_nth(&vm, n, &fired);
		if (!fired) {
			if (!r)
				vm_destroy(&vm);
			break;
		}
		site_result(&vm_site, n, r);
		if (r)
			continue;
		if (n % 10) {
			vm_destroy(&vm);
			continue;
		}
		/* A VM that survived a failure still counts exactly. */
		if (vcpu_create(&vm, &v, 0))
			violation("fault create_vm n=%u: no vCPU afterwards", n);
		else {
			fault_run(&vm, &v, 0, &r);
			if (!access(vm.dir, F_OK))
				check_vm_total(&vm, "create_vm", n, buf, s);
			vcpu_destroy(&v);
		}
		vm_destroy(&vm);
	}

	/* KVM_CREATE_VCPU, with the counters allocated at creation. */
	if (vm_create(&vm))
		err(1, "KVM_CREATE_VM");
	for (n = 1; n <= max; n++) {
		bool fired;

		r = vcpu_create_nth(&vm, &v, 0, n, &fired);
		if (!fired) {
			if (!r)
				vcpu_destroy(&v);
			break;
		}
		site_result(&vcpu_site, n, r);
		if (!r) {
			fault_run(&vm, &v, 0, &r);
			check_vm_total(&vm, "create_vcpu", n, buf, s);
			vcpu_destroy(&v);
		}
		/* vCPU ids cannot be reused: a new VM for the next attempt. */
		vm_destroy(&vm);
		if (vm_create(&vm))
			err(1, "KVM_CREATE_VM");
	}
	vm_destroy(&vm);

	/* The first exits of each reason, which allocate rows (and KVM's own
	 * first-run allocations). */
	for (n = 1; n <= max; n++) {
		bool fired;

		if (vm_create(&vm) || vcpu_create(&vm, &v, 0))
			err(1, "creating a VM");
		fired = fault_run(&vm, &v, n, &r);
		if (fired) {
			site_result(&run_site, n, r);
			run_site.lost += check_vm_total(&vm, "first_exits", n,
							buf, s);
		}
		vcpu_destroy(&v);
		vm_destroy(&vm);
		if (!fired)
			break;
	}

	/* Reading the host's file. */
	for (n = 1; n <= max; n++) {
		ssize_t len;

		fail_nth(n);
		len = slurp(DEBUGFS "/exit_stats", buf, FILE_MAX);
		if (!fail_fired())
			break;
		site_result(&read_site, n, len < 0 ? len : 0);
		if (len >= 0 && check_stats(buf, s))
			violation("fault read n=%u: %s", n, check_stats(buf, s));
	}

	/* Resetting a VM whose counters hold one run: all or nothing. */
	for (n = 1; n <= max; n++) {
		char path[160];
		uint64_t before;
		bool fired;

		if (vm_create(&vm) || vcpu_create(&vm, &v, 0))
			err(1, "creating a VM");
		fault_run(&vm, &v, 0, &r);
		check_vm_total(&vm, "reset", n, buf, s);
		before = total(s);
		snprintf(path, sizeof(path), "%s/exit_stats_reset", vm.dir);
		fail_nth(n);
		r = write_file(path, "0");
		fired = fail_fired();
		if (fired) {
			site_result(&reset_site, n, r);
			if (!read_checked(vm.dir, buf, s))
				violation("fault reset n=%u: VM file unreadable", n);
			else if (total(s) != (r ? before : 0))
				violation("fault reset n=%u: %s, and TOTAL went from %"
					  PRIu64 " to %" PRIu64, n,
					  r ? "failed" : "succeeded", before, total(s));
		}
		vcpu_destroy(&v);
		vm_destroy(&vm);
		if (!fired)
			break;
	}

	/*
	 * Switching on with a vCPU that needs counters: all or nothing.  The
	 * vCPU's counters start afresh with every switch on.
	 */
	if (vm_create(&vm) || vcpu_create(&vm, &v, 0))
		err(1, "creating a VM");
	for (n = 1; n <= max; n++) {
		char on[8] = "";

		if (write_file(PARAM, "N"))
			err(1, "%s", PARAM);
		fail_nth(n);
		r = write_file(PARAM, "Y");
		if (!fail_fired())
			break;
		site_result(&on_site, n, r);
		slurp(PARAM, on, sizeof(on));
		if ((on[0] == 'Y') != !r)
			violation("fault switch_on n=%u: %s but kvm.exit_stats=%c",
				  n, r ? "failed" : "succeeded", on[0]);
		fault_run(&vm, &v, 0, &r);
		if (!read_checked(vm.dir, buf, s))
			violation("fault switch_on n=%u: VM file unreadable", n);
		else if (on[0] == 'Y')
			check_exact("fault switch_on", s, 1, 5);
		else if (total(s))
			violation("fault switch_on n=%u: off, but TOTAL %" PRIu64,
				  n, total(s));
	}
	vcpu_destroy(&v);
	vm_destroy(&vm);
	if (write_file(PARAM, "Y"))
		err(1, "%s", PARAM);

	site_report(&vm_site);
	site_report(&vcpu_site);
	site_report(&run_site);
	site_report(&read_site);
	site_report(&reset_site);
	site_report(&on_site);
	row_failures(buf, s, &rows_site);
	site_report(&rows_site);
	free(buf);
	free(s);
}

/* ------------------------------------------------------------- main */

static void usage(FILE *out, int status)
{
	fprintf(out,
		"Usage: kes-stress [options]\n"
		"Churn VMs while reading, resetting and switching exit_stats, then\n"
		"check exact counts.\n\n"
		"  -s, --seconds N       length of the storm (default 60)\n"
		"  -V, --vms N           VM churn threads (default 3)\n"
		"  -c, --max-vcpus N     vCPUs per churned VM, 1..N (default 3, at most 16)\n"
		"  -l, --loops N         guest loops per vCPU, 1..N (default 200)\n"
		"  -r, --readers N       reader threads (default 2)\n"
		"  -R, --resetters N     resetter threads (default 1)\n"
		"  -t, --toggle-ms N     switch off for 0..N ms every 0..2N ms (default 500)\n"
		"  -T, --no-toggle       never switch accounting off\n"
		"  -f, --final-vcpus N   vCPUs of the final exact-count VM (default 4)\n"
		"  -L, --final-loops N   loops per vCPU of the final VM (default 300)\n"
		"  -b, --baseline        the same storm on KVM's own files (exits, tsc-offset),\n"
		"                        no switching, no final check: for a kernel without\n"
		"                        the series\n"
		"  -C, --check FILE...   instead of the storm: check saved exit_stats files\n"
		"  -F, --faults N        instead of the storm: fail the 1st, 2nd, ... Nth\n"
		"                        allocation of each site (fail-nth), check the results\n"
		"  -h, --help            show this help\n");
	exit(status);
}

/* --check: the checks of every read, on saved files; 1 if one fails. */
static int check_files(char **files, int n)
{
	char *buf = malloc(FILE_MAX);
	struct stats *s = malloc(sizeof(*s));
	int bad = 0;

	if (!buf || !s)
		err(1, "malloc");
	if (!n)
		usage(stderr, 2);
	for (int i = 0; i < n; i++) {
		const char *why;
		ssize_t len = slurp(files[i], buf, FILE_MAX);

		if (len < 0)
			errx(1, "%s: %s", files[i], strerror(-len));
		why = check_stats(buf, s);
		printf("%s: %s\n", files[i], why ? why : "ok");
		bad |= why != NULL;
	}
	free(buf);
	free(s);
	return bad;
}

static unsigned int number(const char *s, unsigned int lo, unsigned int hi)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || *end || end == s || *s == '-' || v < lo || v > hi)
		errx(2, "invalid number '%s' (%u..%u)", s, lo, hi);
	return v;
}

static void summary(double seconds)
{
	unsigned long reads = 0, resets = 0;
	int i, r;

	for (i = 0; i < 3; i++) {
		reads += st.reads[i];
		resets += st.resets[i];
	}
	printf("seconds %.1f\n", seconds);
	printf("vms %lu\nvcpus %lu\nkvm_runs %lu\nguest_loops %lu\n", st.vms,
	       st.vcpus, st.runs, st.loops);
	printf("reads %lu\n", reads);
	for (i = 0; i < 3; i++)
		printf("reads_%s %lu\n", scope_names[i], st.reads[i]);
	printf("reads_overlapping %lu\nreads_gone %lu\nrows_checked %lu\n",
	       st.reads_overlap, st.reads_gone, st.rows_checked);
	printf("resets %lu\n", resets);
	for (i = 0; i < 3; i++)
		printf("resets_%s %lu\n", scope_names[i], st.resets[i]);
	printf("resets_overlapping %lu\nresets_gone %lu\n", st.resets_overlap,
	       st.resets_gone);
	printf("toggles %lu\ntoggles_overlapping %lu\n", st.toggles,
	       st.toggles_overlap);
	for (r = 0; r < 4; r++)
		for (i = 0; i < MAX_CPUS; i++)
			if (st.cpu[r][i])
				printf("cpu %d %s %lu\n", i, role_names[r],
				       st.cpu[r][i]);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "vms", required_argument, NULL, 'V' },
		{ "max-vcpus", required_argument, NULL, 'c' },
		{ "loops", required_argument, NULL, 'l' },
		{ "readers", required_argument, NULL, 'r' },
		{ "resetters", required_argument, NULL, 'R' },
		{ "toggle-ms", required_argument, NULL, 't' },
		{ "no-toggle", no_argument, NULL, 'T' },
		{ "final-vcpus", required_argument, NULL, 'f' },
		{ "final-loops", required_argument, NULL, 'L' },
		{ "baseline", no_argument, NULL, 'b' },
		{ "faults", required_argument, NULL, 'F' },
		{ "check", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	pthread_t threads[MAX_THREADS];
	unsigned int nthreads = 0, i;
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry entry;
	} msrs = { .hdr.nmsrs = 1, .entry.index = MSR_MISC_ENABLE };
	struct vm probe;
	struct vcpu v0;
	uint64_t t0;
	int c;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt_long(argc, argv, "s:V:c:l:r:R:t:Tf:L:bF:Ch", opts, NULL)) != -1) {
		switch (c) {
		case 's': opt_seconds = number(optarg, 1, 86400); break;
		case 'V': opt_vms = number(optarg, 1, 16); break;
		case 'c': opt_max_vcpus = number(optarg, 1, 16); break;
		case 'l': opt_loops = number(optarg, 1, 1000000); break;
		case 'r': opt_readers = number(optarg, 0, 16); break;
		case 'R': opt_resetters = number(optarg, 0, 16); break;
		case 't': opt_toggle_ms = number(optarg, 1, 60000); break;
		case 'T': opt_no_toggle = true; break;
		case 'f': opt_final_vcpus = number(optarg, 1, 64); break;
		case 'L': opt_final_loops = number(optarg, 1, 1000000); break;
		case 'b': opt_baseline = true; break;
		case 'F': opt_faults = number(optarg, 1, 100000); break;
		case 'C': opt_check = true; break;
		case 'h': usage(stdout, 0); break;
		default: usage(stderr, 2);
		}
	}
	if (opt_check)
		return check_files(argv + optind, argc - optind);
	if (optind != argc)
		usage(stderr, 2);

	kvm_fd = open("/dev/kvm", O_RDWR);
	if (kvm_fd < 0)
		err(1, "/dev/kvm");
	run_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < 0)
		err(1, "KVM_GET_VCPU_MMAP_SIZE");
	cpuid = calloc(1, sizeof(*cpuid) + 256 * sizeof(cpuid->entries[0]));
	if (!cpuid)
		err(1, "calloc");
	cpuid->nent = 256;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
		err(1, "KVM_GET_SUPPORTED_CPUID");
	/* The guest writes MISC_ENABLE's own value back. */
	if (vm_create(&probe) || vcpu_create(&probe, &v0, 0))
		err(1, "creating the first VM");
	if (ioctl(v0.fd, KVM_GET_MSRS, &msrs) != 1)
		err(1, "KVM_GET_MSRS");
	guest_params.misc_lo = (uint32_t)msrs.entry.data;
	guest_params.misc_hi = msrs.entry.data >> 32;
	vcpu_destroy(&v0);
	vm_destroy(&probe);

	if (!opt_baseline) {
		char *buf = malloc(FILE_MAX);

		if (!buf || slurp(DEBUGFS "/exit_stats", buf, FILE_MAX) < 0)
			err(1, DEBUGFS "/exit_stats");
		svm = strstr(buf, "\n# vendor SVM\n") != NULL;
		free(buf);
	}
	if (opt_faults) {
		faults(opt_faults);
		printf("violations %lu\n", st.violations);
		return st.violations ? 1 : 0;
	}
	printf("cpus online %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
	t0 = now_ns();
	for (i = 0; i < opt_vms; i++)
		pthread_create(&threads[nthreads++], NULL, churn_thread,
			       (void *)(uintptr_t)i);
	for (i = 0; i < opt_readers; i++)
		pthread_create(&threads[nthreads++], NULL, reader_thread,
			       (void *)(uintptr_t)i);
	for (i = 0; i < opt_resetters; i++)
		pthread_create(&threads[nthreads++], NULL, resetter_thread,
			       (void *)(uintptr_t)i);
	if (!opt_no_toggle && !opt_baseline)
		pthread_create(&threads[nthreads++], NULL, toggler_thread, NULL);
	while (now_ns() - t0 < opt_seconds * 1000000000ull)
		sleep(1);
	atomic_store(&stop, true);
	for (i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	summary((now_ns() - t0) / 1e9);
	if (!opt_baseline)
		final_check();
	printf("violations %lu\n", st.violations);
	return st.violations ? 1 : 0;
}
