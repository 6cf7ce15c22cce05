// SPDX-License-Identifier: GPL-2.0-only
/*
 * kes-bench - the benchmark guest program of `make bench`, run in the
 * emulated L1 whose TSC counts executed instructions.
 *
 *   kes-bench exit KIND N REPEATS
 *	For each repeat, a fresh VM whose 32-bit guest executes N exits of
 *	KIND and then writes the "done" port; prints the TSC ticks per exit
 *	of the whole KVM_RUN loop.  KIND: cpuid, rdmsr (MSR_IA32_MISC_ENABLE,
 *	which KVM always intercepts), hlt (no in-kernel irqchip, so every HLT
 *	returns to userspace), io (an OUT that returns to userspace).
 *
 *   kes-bench read NVCPUS REPEATS
 *	One VM with NVCPUS vCPUs, each run once (one OUT to userspace); then
 *	the ticks to open, read and close KVM's "exits" and our "exit_stats",
 *	host-wide and of the VM, REPEATS times each.
 *
 *   kes-bench mem NVCPUS REPEATS
 *	For each repeat, a fresh VM with NVCPUS vCPUs that each run the mix of
 *	six kinds of exit once: CPUID, RDMSR, WRMSR, OUT (to userspace), HLT
 *	(to userspace) and a read of unbacked memory (EPT violation / NPF,
 *	KVM_EXIT_MMIO); prints the free memory (MemFree plus the per-CPU free
 *	lists) before the VM is created minus that after every vCPU ran, of
 *	which slab (reclaimable, e.g. debugfs dentries and inodes, and not),
 *	and, for the first repeat, the rows of the VM's exit_stats if any.
 *
 * Output lines: "exit KIND REPEAT TICKS_PER_EXIT",
 * "read FILE NVCPUS REPEAT TICKS", FILE one of exits, exit_stats, vm-exits,
 * vm-exit_stats, "mem NVCPUS REPEAT KIB SRECLAIMABLE_KIB SUNRECLAIM_KIB" and
 * "memrow NAME COUNT".
 */
#include <err.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "guest.h"

#define MEM_SIZE	0x10000
#define CODE_GPA	0x1000
#define PARAM_GPA	0x500
#define PORT_IO		0x99
#define PORT_DONE	0xf1
#define MMIO_GPA	0x20000		/* beyond MEM_SIZE: no memslot */
#define MAX_VCPUS	1024
#define DEBUGFS		"/sys/kernel/debug/kvm"

enum kind { CPUID, RDMSR, HLT, IO, NR_KINDS, MIX = NR_KINDS };
static const char *const kind_names[NR_KINDS] = { "cpuid", "rdmsr", "hlt", "io" };

/* At PARAM_GPA: the number of exits, then the kind. */
struct params {
	uint32_t count, kind;
};

extern const unsigned char guest_code[], guest_code_end[];

asm(".pushsection .rodata\n"
    ".code32\n"
    "guest_code:\n"
    "	mov 0x500, %esi\n"
    "	mov 0x504, %edi\n"
    "	test %esi, %esi\n"
    "	jz 9f\n"
    "	cmp $1, %edi\n"
    "	je 2f\n"
    "	cmp $2, %edi\n"
    "	je 3f\n"
    "	cmp $3, %edi\n"
    "	je 4f\n"
    "	cmp $4, %edi\n"
    "	je 5f\n"
    "1:	xor %eax, %eax\n"		/* CPUID */
    "	cpuid\n"
    "	dec %esi\n"
    "	jnz 1b\n"
    "	jmp 9f\n"
    "2:	mov $0x1a0, %ecx\n"		/* RDMSR */
    "	rdmsr\n"
    "	dec %esi\n"
    "	jnz 2b\n"
    "	jmp 9f\n"
    "3:	hlt\n"				/* HLT */
    "	dec %esi\n"
    "	jnz 3b\n"
    "	jmp 9f\n"
    "4:	out %al, $0x99\n"		/* OUT */
    "	dec %esi\n"
    "	jnz 4b\n"
    "	jmp 9f\n"
    "5:	xor %eax, %eax\n"		/* the mix */
    "	cpuid\n"
    "	mov $0x1a0, %ecx\n"
    "	rdmsr\n"
    "	wrmsr\n"
    "	out %al, $0x99\n"
    "	hlt\n"
    "	mov 0x20000, %eax\n"
    "9:	out %al, $0xf1\n"		/* done */
    "	jmp 9b\n"
    "guest_code_end:\n"
    ".code64\n"
    ".popsection\n");

static int kvm_fd;
static long run_size;

static unsigned long number(const char *s, unsigned long max)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (!*s || *end || v > max)
		errx(2, "bad number '%s' (0..%lu)", s, max);
	return v;
}

/* A VM with the guest code and @p in its memory. */
static int create_vm(const struct params *p)
{
	struct kvm_userspace_memory_region region = {
		.memory_size = MEM_SIZE,
	};
	int vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	unsigned char *mem;

	if (vm_fd < 0)
		err(1, "KVM_CREATE_VM");
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		err(1, "mmap guest memory");
	memcpy(mem + CODE_GPA, guest_code, guest_code_end - guest_code);
	memcpy(mem + PARAM_GPA, p, sizeof(*p));
	region.userspace_addr = (uintptr_t)mem;
	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		err(1, "KVM_SET_USER_MEMORY_REGION");
	return vm_fd;
}

/* A vCPU in flat 32-bit protected mode at the guest code. */
static int create_vcpu(int vm_fd, int id, struct kvm_run **run)
{
	int fd = ioctl(vm_fd, KVM_CREATE_VCPU, id);

	if (fd < 0)
		err(1, "KVM_CREATE_VCPU %d", id);
	*run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (*run == MAP_FAILED)
		err(1, "mmap kvm_run");
	set_protected_mode(fd);
	set_rip(fd, CODE_GPA);
	return fd;
}

/* KVM_RUN until the guest writes the done port; returns the exits seen. */
static unsigned long run_to_done(int fd, struct kvm_run *run, enum kind kind)
{
	unsigned long n = 0;

	for (;;) {
		if (ioctl(fd, KVM_RUN, 0) < 0)
			err(1, "KVM_RUN");
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == PORT_DONE)
			return n;
		if (((kind == IO || kind == MIX) &&
		     run->exit_reason == KVM_EXIT_IO && run->io.port == PORT_IO) ||
		    ((kind == HLT || kind == MIX) &&
		     run->exit_reason == KVM_EXIT_HLT) ||
		    (kind == MIX && run->exit_reason == KVM_EXIT_MMIO &&
		     run->mmio.phys_addr == MMIO_GPA)) {
			n++;
			continue;
		}
		errx(1, "unexpected exit reason %u", run->exit_reason);
	}
}

static void bench_exit(enum kind kind, uint32_t count, unsigned long repeats)
{
	struct params p = { .count = count, .kind = kind };
	unsigned long r, seen;
	struct kvm_run *run;
	uint64_t t0, t1;
	int vm_fd, fd;

	for (r = 0; r < repeats; r++) {
		vm_fd = create_vm(&p);
		fd = create_vcpu(vm_fd, 0, &run);
		t0 = __builtin_ia32_rdtsc();
		seen = run_to_done(fd, run, kind);
		t1 = __builtin_ia32_rdtsc();
		if ((kind == IO || kind == HLT) && seen != count)
			errx(1, "%lu exits to userspace, expected %u", seen, count);
		printf("exit %s %lu %.1f\n", kind_names[kind], r,
		       (double)(t1 - t0) / count);
		fflush(stdout);
		munmap(run, run_size);
		close(fd);
		close(vm_fd);
	}
}

/* Ticks to open, read to the end and close @path. */
static uint64_t read_ticks(const char *path)
{
	static char buf[1 << 16];
	uint64_t t0 = __builtin_ia32_rdtsc();
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		err(1, "%s", path);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		;
	if (n < 0)
		err(1, "read %s", path);
	close(fd);
	return __builtin_ia32_rdtsc() - t0;
}

static void bench_read(unsigned long nvcpus, unsigned long repeats)
{
	struct params p = { .count = 1, .kind = IO };
	struct rlimit nofile = { nvcpus + 64, nvcpus + 64 };
	const char *files[] = { "exits", "exit_stats" };
	char path[128];
	struct kvm_run *run;
	unsigned long i, r, f;
	int vm_fd, fd;

	if (nofile.rlim_cur > 1024 && setrlimit(RLIMIT_NOFILE, &nofile) < 0)
		err(1, "setrlimit(RLIMIT_NOFILE, %lu)", nofile.rlim_cur);
	vm_fd = create_vm(&p);
	for (i = 0; i < nvcpus; i++) {
		fd = create_vcpu(vm_fd, i, &run);
		if (run_to_done(fd, run, IO) != 1)
			errx(1, "vCPU %lu: expected one OUT", i);
		munmap(run, run_size);
	}
	for (f = 0; f < 2; f++) {
		snprintf(path, sizeof(path), DEBUGFS "/%s", files[f]);
		for (r = 0; r < repeats; r++)
			printf("read %s %lu %lu %llu\n", files[f], nvcpus, r,
			       (unsigned long long)read_ticks(path));
		snprintf(path, sizeof(path), DEBUGFS "/%d-%d/%s", getpid(),
			 vm_fd, files[f]);
		for (r = 0; r < repeats; r++)
			printf("read vm-%s %lu %lu %llu\n", files[f], nvcpus, r,
			       (unsigned long long)read_ticks(path));
	}
	fflush(stdout);
	/* The vCPU fds go with the process. */
}

/* A field of /proc/meminfo, in KiB. */
static long meminfo(const char *field)
{
	char line[128], name[64];
	FILE *f = fopen("/proc/meminfo", "r");
	long kib = -1, v;

	if (!f)
		err(1, "/proc/meminfo");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%63[^:]: %ld kB", name, &v) == 2 &&
		    !strcmp(name, field))
			kib = v;
	fclose(f);
	if (kib < 0)
		errx(1, "no %s in /proc/meminfo", field);
	return kib;
}

/*
 * Free memory in KiB: MemFree of /proc/meminfo plus the pages that the
 * per-CPU free lists hold (the "count" of each pageset in /proc/zoneinfo),
 * which MemFree leaves out, so that their refills do not show as use.
 */
static long mem_free(void)
{
	long kib = meminfo("MemFree"), pcp = 0, n;
	char line[128];
	FILE *f;

	f = fopen("/proc/zoneinfo", "r");
	if (!f)
		err(1, "/proc/zoneinfo");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, " count: %ld", &n) == 1)
			pcp += n;
	fclose(f);
	return kib + pcp * (sysconf(_SC_PAGESIZE) / 1024);
}

/* The name and count of each row of @path, if it exists. */
static void print_rows(const char *path)
{
	char line[1024], code[16], name[64];
	FILE *f = fopen(path, "r");
	unsigned long count;

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (line[0] != '#' &&
		    sscanf(line, "%15s %63s %lu", code, name, &count) == 3)
			printf("memrow %s %lu\n", name, count);
	fclose(f);
}

static void bench_mem(unsigned long nvcpus, unsigned long repeats)
{
	struct params p = { .count = 1, .kind = MIX };
	struct rlimit nofile = { nvcpus + 64, nvcpus + 64 };
	static int fds[MAX_VCPUS];
	unsigned long i, r;
	struct kvm_run *run;
	char path[128];
	long before, recl, unrecl;
	int vm_fd;

	if (nofile.rlim_cur > 1024 && setrlimit(RLIMIT_NOFILE, &nofile) < 0)
		err(1, "setrlimit(RLIMIT_NOFILE, %lu)", nofile.rlim_cur);
	for (r = 0; r < repeats; r++) {
		/* Let the frees of the last repeat, some deferred, finish. */
		sleep(1);
		before = mem_free();
		recl = meminfo("SReclaimable");
		unrecl = meminfo("SUnreclaim");
		vm_fd = create_vm(&p);
		for (i = 0; i < nvcpus; i++) {
			fds[i] = create_vcpu(vm_fd, i, &run);
			/* OUT, HLT and the MMIO read go to userspace. */
			if (run_to_done(fds[i], run, MIX) != 3)
				errx(1, "vCPU %lu: expected 3 exits to userspace", i);
			munmap(run, run_size);
		}
		printf("mem %lu %lu %ld %ld %ld\n", nvcpus, r, before - mem_free(),
		       meminfo("SReclaimable") - recl,
		       meminfo("SUnreclaim") - unrecl);
		if (!r) {
			snprintf(path, sizeof(path), DEBUGFS "/%d-%d/exit_stats",
				 getpid(), vm_fd);
			print_rows(path);
		}
		fflush(stdout);
		for (i = 0; i < nvcpus; i++)
			close(fds[i]);
		close(vm_fd);
	}
}

int main(int argc, char **argv)
{
	unsigned long k;

	kvm_fd = open("/dev/kvm", O_RDWR);
	if (kvm_fd < 0)
		err(1, "/dev/kvm");
	run_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size <= 0)
		err(1, "KVM_GET_VCPU_MMAP_SIZE");

	if (argc == 5 && !strcmp(argv[1], "exit")) {
		for (k = 0; k < NR_KINDS; k++)
			if (!strcmp(argv[2], kind_names[k]))
				break;
		if (k == NR_KINDS)
			errx(2, "unknown exit kind '%s'", argv[2]);
		bench_exit(k, number(argv[3], UINT32_MAX),
			   number(argv[4], 1000));
	} else if (argc == 4 && !strcmp(argv[1], "read")) {
		bench_read(number(argv[2], MAX_VCPUS), number(argv[3], 1000));
	} else if (argc == 4 && !strcmp(argv[1], "mem")) {
		bench_mem(number(argv[2], MAX_VCPUS), number(argv[3], 1000));
	} else {
		fprintf(stderr, "usage: kes-bench exit cpuid|rdmsr|hlt|io N REPEATS\n"
				"       kes-bench read NVCPUS REPEATS\n"
				"       kes-bench mem NVCPUS REPEATS\n");
		return 2;
	}
	return 0;
}
