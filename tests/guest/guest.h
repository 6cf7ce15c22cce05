/* SPDX-License-Identifier: GPL-2.0-only */
/* Helpers shared by the KVM guest programs of the tests. */
#ifndef KES_GUEST_H
#define KES_GUEST_H

#include <err.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>

/* A flat 4 GiB 32-bit segment: code (type 11) or data (type 3). */
static inline void set_seg(struct kvm_segment *seg, uint16_t sel, uint8_t type)
{
	memset(seg, 0, sizeof(*seg));
	seg->limit = 0xffffffff;
	seg->selector = sel;
	seg->type = type;
	seg->present = 1;
	seg->db = 1;
	seg->s = 1;
	seg->g = 1;
}

/* Put a vCPU in flat 32-bit protected mode, paging off: CS 0x8, data 0x10. */
static inline void set_protected_mode(int vcpu_fd)
{
	struct kvm_sregs sregs;

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		err(1, "KVM_GET_SREGS");
	set_seg(&sregs.cs, 0x8, 11);
	set_seg(&sregs.ds, 0x10, 3);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.cr0 = 0x11;	/* PE | ET */
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		err(1, "KVM_SET_SREGS");
}

/* Start (or start again) a vCPU at @rip, the other registers zero. */
static inline void set_rip(int vcpu_fd, uint64_t rip)
{
	struct kvm_regs regs = { .rip = rip, .rflags = 2 };

	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		err(1, "KVM_SET_REGS");
}

#endif
