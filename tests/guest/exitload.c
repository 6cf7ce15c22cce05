// SPDX-License-Identifier: GPL-2.0-only
/*
 * exitload - run a KVM guest whose VM-Exits are known in advance.
 *
 * Every vCPU runs the same 32-bit protected-mode guest: N CPUIDs, N port
 * writes to userspace, N RDMSR and N WRMSR of MSR_IA32_MISC_ENABLE (which KVM
 * always intercepts), optionally N x2APIC ICR writes (handled in the VMX
 * fastpath, needs the in-kernel irqchip) and N HLTs, then a write to the
 * "done" port (or, with --ud, a UD2 that ends in a triple fault).  Options
 * add N RDMSRs of MSR_IA32_APICBASE, N 16-bit port writes to a second port
 * and N KVM hypercalls (VMCALL or VMMCALL, whichever the host has), before
 * the UD2 or "done", for the per-MSR, per-port and per-hypercall counts.  With
 * --real-mode the guest is a 16-bit real-mode one that only does the port
 * writes, with a CS base that is not selector * 16: VMX without unrestricted
 * guest cannot run that, so KVM emulates it.  With --dump the VM's debugfs
 * files are printed before the VM is destroyed; with --wait FILE the VM stays
 * alive (its vCPUs idle) until FILE exists.  Works on VMX and SVM alike.
 */
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <cpuid.h>
#include <getopt.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest.h"

#define MEM_SIZE	0x10000
#define CODE_GPA	0x1000
#define PARAM_GPA	0x500
#define PORT_IO		0x99
#define PORT_IO2	0x9a
#define PORT_DONE	0xf1
#define MSR_MISC_ENABLE	0x1a0
#define MAX_VCPUS	1024

/* Parameter block at PARAM_GPA, read by the guest code below. */
struct params {
	uint32_t cpuid, io, rdmsr, wrmsr;
	uint32_t misc_lo, misc_hi;
	uint32_t icr, hlt;
	uint32_t ud;
	uint32_t rdmsr2, io2, hypercall;
};

extern const unsigned char guest_code[], guest_code_end[], hypercall_insn[];

asm(".pushsection .rodata\n"
    ".code32\n"
    "guest_code:\n"
    "	mov 0x500, %esi\n"		/* CPUID */
    "1:	test %esi, %esi\n"
    "	jz 2f\n"
    "	xor %eax, %eax\n"
    "	cpuid\n"
    "	dec %esi\n"
    "	jmp 1b\n"
    "2:	mov 0x504, %esi\n"		/* OUT to userspace */
    "	mov $0x99, %dx\n"
    "3:	test %esi, %esi\n"
    "	jz 4f\n"
    "	out %al, %dx\n"
    "	dec %esi\n"
    "	jmp 3b\n"
    "4:	mov 0x508, %esi\n"		/* RDMSR */
    "	mov $0x1a0, %ecx\n"
    "5:	test %esi, %esi\n"
    "	jz 6f\n"
    "	rdmsr\n"
    "	dec %esi\n"
    "	jmp 5b\n"
    "6:	mov 0x50c, %esi\n"		/* WRMSR of the current value */
    "	mov 0x510, %eax\n"
    "	mov 0x514, %edx\n"
    "7:	test %esi, %esi\n"
    "	jz 8f\n"
    "	wrmsr\n"
    "	dec %esi\n"
    "	jmp 7b\n"
    "8:	mov 0x518, %esi\n"		/* x2APIC on, then ICR writes */
    "	test %esi, %esi\n"
    "	jz 10f\n"
    "	mov $0x1b, %ecx\n"
    "	mov $0xfee00d00, %eax\n"
    "	xor %edx, %edx\n"
    "	wrmsr\n"
    "	mov $0x830, %ecx\n"
    "	mov $0xf0, %eax\n"
    "	mov $0x7f, %edx\n"
    "9:	wrmsr\n"
    "	dec %esi\n"
    "	jnz 9b\n"
    "10:	mov 0x51c, %esi\n"		/* HLT */
    "11:	test %esi, %esi\n"
    "	jz 12f\n"
    "	hlt\n"
    "	dec %esi\n"
    "	jmp 11b\n"
    "12:	mov 0x524, %esi\n"		/* RDMSR of APIC_BASE */
    "	mov $0x1b, %ecx\n"
    "20:	test %esi, %esi\n"
    "	jz 21f\n"
    "	rdmsr\n"
    "	dec %esi\n"
    "	jmp 20b\n"
    "21:	mov 0x528, %esi\n"		/* 16-bit OUT to the second port */
    "	mov $0x9a, %dx\n"
    "22:	test %esi, %esi\n"
    "	jz 23f\n"
    "	out %ax, %dx\n"
    "	dec %esi\n"
    "	jmp 22b\n"
    "23:	mov 0x52c, %esi\n"		/* KVM_HC_VAPIC_POLL_IRQ */
    "24:	test %esi, %esi\n"
    "	jz 25f\n"
    "	mov $1, %eax\n"
    "hypercall_insn:\n"
    "	vmcall\n"			/* the last byte is patched for SVM */
    "	dec %esi\n"
    "	jmp 24b\n"
    "25:	cmpl $0, 0x520\n"		/* ud2: #UD, then a triple fault */
    "	je 13f\n"
    "	ud2\n"
    "13:	mov $0xf1, %dx\n"		/* done */
    "	out %al, %dx\n"
    "	jmp 13b\n"
    "guest_code_end:\n"
    ".code64\n"
    ".popsection\n");

extern const unsigned char rm_guest_code[], rm_guest_code_end[];

asm(".pushsection .rodata\n"
    ".code16\n"
    "rm_guest_code:\n"
    "	mov 0x504, %si\n"		/* OUT to userspace, at most 65535 */
    "	mov $0x99, %dx\n"
    "1:	test %si, %si\n"
    "	jz 2f\n"
    "	out %al, %dx\n"
    "	dec %si\n"
    "	jmp 1b\n"
    "2:	mov $0xf1, %dx\n"		/* done */
    "	out %al, %dx\n"
    "	jmp 2b\n"
    "rm_guest_code_end:\n"
    ".code64\n"
    ".popsection\n");

static int real_mode;

struct vcpu {
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	unsigned long io, io2, hlt;
	unsigned long long first_run_ticks;	/* TSC ticks of the first KVM_RUN */
	const char *error;
};

static const char *wait_file;

static int kvm_fd, vm_fd;
static struct params params;
static int run_size;

static void usage(FILE *out, int status)
{
	fprintf(out,
		"Usage: exitload [options]\n"
		"Run a KVM guest whose VM-Exits are known, print what it did.\n\n"
		"  -c, --cpuid N    CPUID instructions per vCPU\n"
		"  -i, --io N       port writes to userspace per vCPU (plus one 'done' write)\n"
		"  -r, --rdmsr N    RDMSR of MSR_IA32_MISC_ENABLE per vCPU\n"
		"  -w, --wrmsr N    WRMSR of MSR_IA32_MISC_ENABLE per vCPU\n"
		"  -x, --icr N      enable x2APIC (one WRMSR), then N ICR writes (in-kernel irqchip)\n"
		"  -H, --hlt N      HLT instructions per vCPU (not with --icr)\n"
		"  -R, --rdmsr2 N   RDMSR of MSR_IA32_APICBASE per vCPU\n"
		"  -o, --io2 N      16-bit port writes to userspace, to a second port, per vCPU\n"
		"  -y, --hypercall N  KVM hypercalls (KVM_HC_VAPIC_POLL_IRQ) per vCPU\n"
		"  -m, --real-mode  a 16-bit real-mode guest (CS base not selector*16),\n"
		"                   --io writes only; emulated on VMX without\n"
		"                   unrestricted guest\n"
		"  -u, --ud         end with UD2 instead of the 'done' write: #UD, then a\n"
		"                   triple fault (no IDT) and KVM_EXIT_SHUTDOWN\n"
		"  -v, --vcpus N    vCPUs, each running the workload (default 1)\n"
		"  -d, --dump       print the VM's debugfs exit_stats and exits before exit\n"
		"  -D, --dump-detail  --dump, and the exit_stats_detail files too\n"
		"  -W, --wait FILE  after the workload, print 'ready' and keep the VM until FILE exists\n"
		"  -h, --help       show this help\n");
	exit(status);
}

static int host_has_svm(void)
{
	unsigned int eax, ebx, ecx, edx;

	return __get_cpuid(0x80000001, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 2));
}

static unsigned long number(const char *s, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || *end || end == s || *s == '-' || v > max)
		errx(2, "invalid number '%s' (0..%lu)", s, max);
	return v;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	unsigned long long t0 = __builtin_ia32_rdtsc();

	for (;;) {
		int r = ioctl(v->fd, KVM_RUN, 0);

		if (!v->first_run_ticks)
			v->first_run_ticks = __builtin_ia32_rdtsc() - t0;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			v->error = "KVM_RUN failed";
			return NULL;
		}
		switch (v->run->exit_reason) {
		case KVM_EXIT_IO:
			if (v->run->io.port == PORT_DONE)
				return NULL;
			if (v->run->io.port == PORT_IO2 && v->run->io.size == 2) {
				v->io2++;
				break;
			}
			if (v->run->io.port != PORT_IO) {
				v->error = "unexpected port";
				return NULL;
			}
			v->io++;
			break;
		case KVM_EXIT_HLT:
			v->hlt++;
			break;
		case KVM_EXIT_SHUTDOWN:
			if (!params.ud)
				v->error = "unexpected shutdown";
			return NULL;
		default:
			fprintf(stderr, "exitload: unexpected exit reason %u\n",
				v->run->exit_reason);
			v->error = "unexpected exit";
			return NULL;
		}
	}
}

static void create_vcpu(struct vcpu *v, int id, struct kvm_cpuid2 *cpuid)
{
	struct kvm_sregs sregs;
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry entry;
	} msrs = { .hdr.nmsrs = 1, .entry.index = MSR_MISC_ENABLE };

	v->fd = ioctl(vm_fd, KVM_CREATE_VCPU, id);
	if (v->fd < 0)
		err(1, "KVM_CREATE_VCPU %d", id);
	v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->fd, 0);
	if (v->run == MAP_FAILED)
		err(1, "mmap kvm_run");
	if (ioctl(v->fd, KVM_SET_CPUID2, cpuid) < 0)
		err(1, "KVM_SET_CPUID2");

	if (params.icr) {
		struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

		if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
			err(1, "KVM_SET_MP_STATE");
	}

	if (real_mode) {
		/* Flat data at 0, code at CODE_GPA from selector 0. */
		if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
			err(1, "KVM_GET_SREGS");
		sregs.cs.selector = 0;
		sregs.cs.base = CODE_GPA;
		sregs.ds.selector = 0;
		sregs.ds.base = 0;
		sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
		sregs.cr0 = 0x10;	/* ET */
		if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
			err(1, "KVM_SET_SREGS");
	} else {
		set_protected_mode(v->fd);
	}
	set_rip(v->fd, real_mode ? 0 : CODE_GPA);

	if (id == 0) {
		if (ioctl(v->fd, KVM_GET_MSRS, &msrs) != 1)
			err(1, "KVM_GET_MSRS");
		params.misc_lo = (uint32_t)msrs.entry.data;
		params.misc_hi = msrs.entry.data >> 32;
	}
}

static void dump(const char *path)
{
	char buf[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	printf("=== %s\n", path);
	if (fd < 0)
		err(1, "%s", path);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, n, stdout);
	if (n < 0)
		err(1, "%s", path);
	close(fd);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cpuid", required_argument, NULL, 'c' },
		{ "io", required_argument, NULL, 'i' },
		{ "rdmsr", required_argument, NULL, 'r' },
		{ "wrmsr", required_argument, NULL, 'w' },
		{ "icr", required_argument, NULL, 'x' },
		{ "hlt", required_argument, NULL, 'H' },
		{ "rdmsr2", required_argument, NULL, 'R' },
		{ "io2", required_argument, NULL, 'o' },
		{ "hypercall", required_argument, NULL, 'y' },
		{ "ud", no_argument, NULL, 'u' },
		{ "real-mode", no_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "dump", no_argument, NULL, 'd' },
		{ "dump-detail", no_argument, NULL, 'D' },
		{ "wait", required_argument, NULL, 'W' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct kvm_userspace_memory_region region = { 0 };
	struct kvm_cpuid2 *cpuid;
	unsigned long nvcpus = 1, i, io = 0, io2 = 0, hlt = 0;
	struct vcpu *vcpus;
	char dir[64], path[128];
	int dump_files = 0, c, failed = 0;
	void *mem;

	while ((c = getopt_long(argc, argv, "c:i:r:w:x:H:R:o:y:umv:dDW:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': params.cpuid = number(optarg, UINT32_MAX); break;
		case 'i': params.io = number(optarg, UINT32_MAX); break;
		case 'r': params.rdmsr = number(optarg, UINT32_MAX); break;
		case 'w': params.wrmsr = number(optarg, UINT32_MAX); break;
		case 'x': params.icr = number(optarg, UINT32_MAX); break;
		case 'H': params.hlt = number(optarg, UINT32_MAX); break;
		case 'R': params.rdmsr2 = number(optarg, UINT32_MAX); break;
		case 'o': params.io2 = number(optarg, UINT32_MAX); break;
		case 'y': params.hypercall = number(optarg, UINT32_MAX); break;
		case 'u': params.ud = 1; break;
		case 'm': real_mode = 1; break;
		case 'v': nvcpus = number(optarg, MAX_VCPUS); break;
		case 'd': dump_files = 1; break;
		case 'D': dump_files = 2; break;
		case 'W': wait_file = optarg; break;
		case 'h': usage(stdout, 0); break;
		default: usage(stderr, 2);
		}
	}
	if (optind != argc || !nvcpus)
		usage(stderr, 2);
	if (params.icr && params.hlt)
		errx(2, "--hlt would block forever with the in-kernel irqchip of --icr");
	if (real_mode && (params.cpuid || params.rdmsr || params.wrmsr ||
			  params.icr || params.hlt || params.ud || params.io > 65535 ||
			  params.rdmsr2 || params.io2 || params.hypercall))
		errx(2, "--real-mode only takes --io (at most 65535), --vcpus and the output options");

	kvm_fd = open("/dev/kvm", O_RDWR);
	if (kvm_fd < 0)
		err(1, "/dev/kvm");
	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0)
		err(1, "KVM_CREATE_VM");
	run_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < 0)
		err(1, "KVM_GET_VCPU_MMAP_SIZE");
	snprintf(dir, sizeof(dir), "/sys/kernel/debug/kvm/%d-%d", getpid(), vm_fd);
	printf("vm %d-%d vcpus %lu\n", getpid(), vm_fd, nvcpus);
	fflush(stdout);

	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		err(1, "mmap guest memory");
	if (real_mode)
		memcpy((char *)mem + CODE_GPA, rm_guest_code,
		       rm_guest_code_end - rm_guest_code);
	else
		memcpy((char *)mem + CODE_GPA, guest_code,
		       guest_code_end - guest_code);
	/* VMMCALL (0f 01 d9) on SVM hosts, else VMCALL (0f 01 c1). */
	if (!real_mode && host_has_svm())
		((unsigned char *)mem)[CODE_GPA + (hypercall_insn - guest_code) + 2] = 0xd9;
	region.memory_size = MEM_SIZE;
	region.userspace_addr = (uintptr_t)mem;
	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		err(1, "KVM_SET_USER_MEMORY_REGION");
	/* Real mode on VMX without unrestricted guest wants a vm86 TSS. */
	if (real_mode && ioctl(vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000) < 0)
		err(1, "KVM_SET_TSS_ADDR");
	if (params.icr && ioctl(vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		err(1, "KVM_CREATE_IRQCHIP");

	cpuid = calloc(1, sizeof(*cpuid) + 256 * sizeof(cpuid->entries[0]));
	if (!cpuid)
		err(1, "calloc");
	cpuid->nent = 256;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
		err(1, "KVM_GET_SUPPORTED_CPUID");

	vcpus = calloc(nvcpus, sizeof(*vcpus));
	if (!vcpus)
		err(1, "calloc");
	for (i = 0; i < nvcpus; i++)
		create_vcpu(&vcpus[i], i, cpuid);
	memcpy((char *)mem + PARAM_GPA, &params, sizeof(params));

	for (i = 0; i < nvcpus; i++)
		if (pthread_create(&vcpus[i].thread, NULL, vcpu_thread, &vcpus[i]))
			errx(1, "pthread_create failed");
	for (i = 0; i < nvcpus; i++) {
		pthread_join(vcpus[i].thread, NULL);
		if (vcpus[i].error) {
			warnx("vcpu %lu: %s", i, vcpus[i].error);
			failed = 1;
		}
		io += vcpus[i].io;
		io2 += vcpus[i].io2;
		hlt += vcpus[i].hlt;
	}

	printf("done cpuid %u io %lu rdmsr %u wrmsr %u icr %u hlt %lu rdmsr2 %u io2 %lu hypercall %u\n",
	       params.cpuid, io, params.rdmsr, params.wrmsr, params.icr, hlt,
	       params.rdmsr2, io2, params.hypercall);
	/* With only CPUIDs before the first exit to userspace, this is the
	 * cost of one CPUID exit round trip in TSC ticks. */
	if (params.cpuid && !params.io)
		printf("first-run ticks per cpuid %.1f\n",
		       (double)vcpus[0].first_run_ticks / params.cpuid);
	if (dump_files) {
		snprintf(path, sizeof(path), "%s/exits", dir);
		dump(path);
		snprintf(path, sizeof(path), "%s/exit_stats", dir);
		dump(path);
		for (i = 0; i < nvcpus; i++) {
			snprintf(path, sizeof(path), "%s/vcpu%lu/exit_stats", dir, i);
			dump(path);
		}
	}
	if (dump_files == 2) {
		snprintf(path, sizeof(path), "%s/exit_stats_detail", dir);
		dump(path);
		for (i = 0; i < nvcpus; i++) {
			snprintf(path, sizeof(path), "%s/vcpu%lu/exit_stats_detail", dir, i);
			dump(path);
		}
	}
	fflush(stdout);
	if (wait_file) {
		printf("ready\n");
		fflush(stdout);
		while (access(wait_file, F_OK))
			usleep(10000);
	}
	return failed;
}
