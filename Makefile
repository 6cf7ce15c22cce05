# kvm-exit-stats: see README.md.
BUILD     ?= build
KSRC      := $(BUILD)/linux
KOBJ      := $(BUILD)/kobj
BZIMAGE   := $(KOBJ)/arch/x86/boot/bzImage
JOBS      ?= $(shell nproc)

.PHONY: kernel
kernel:
	$(MAKE) -C $(KSRC) O=$(abspath $(KOBJ)) -j$(JOBS) bzImage >$(BUILD)/kernel-build.log 2>&1 || { tail -30 $(BUILD)/kernel-build.log; exit 1; }
