/* SPDX-License-Identifier: GPL-2.0-only */
/* Helpers shared by the KVM guest programs of the tests. */
#ifndef KES_GUEST_H
#define KES_GUEST_H

#include <linux/kvm.h>
#include <stdint.h>
#include <string.h>

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

#endif
