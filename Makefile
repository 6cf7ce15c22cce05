# kvm-exit-stats -- see README.md.
#
#   make demo          boot the patched kernel under emulation and show
#                      exit_stats of a sample guest (VENDOR=svm|vmx|vmx-ept)
#   make test          everything: series checks, KUnit, end-to-end on SVM and VMX
#   make kernel-tree   build/linux: Debian's 6.12.117 + kernel-patch/ as git
#   make series        regenerate kernel-patch/ from build/linux
#   make kernel        build the test kernel (build/kobj)
#   make checkpatch    scripts/checkpatch.pl --strict on the series
#   make check-series  build the kernel at every patch of the series
#   make debug-check   lockdep + KASAN kernel, run the end-to-end scenario on
#                      SVM, fail on any kernel report
#   make deps          install the Debian packages all of this needs

BUILD   ?= build
VENDOR  ?= svm
PYTHON  ?= /usr/bin/python3
CC      ?= gcc
PYTEST_ARGS ?=

export KES_BUILD := $(abspath $(BUILD))

EXITLOAD := $(BUILD)/exitload
KESIO    := $(BUILD)/kes-io
GUEST_CFLAGS := -static -O2 -std=gnu11 -Wall -Wextra -Werror

.PHONY: all deps kernel-tree series kernel checkpatch check-series exitload \
	demo test debug-check clean distclean

all: kernel exitload

deps:
	@tests/install-deps

kernel-tree: deps
	@tests/kernel tree

series:
	@tests/kernel series

kernel: deps
	@tests/kernel build

checkpatch: deps
	@tests/kernel checkpatch

check-series: deps
	@tests/kernel check-series

exitload: $(EXITLOAD) $(KESIO)

$(EXITLOAD): tests/guest/exitload.c | deps
	@mkdir -p $(BUILD)
	$(CC) $(GUEST_CFLAGS) -pthread -o $@ $<

$(KESIO): tests/guest/kes-io.c | deps
	@mkdir -p $(BUILD)
	$(CC) $(GUEST_CFLAGS) -o $@ $<

# A realistic mix: CPUID, port IO to userspace, MSR accesses, HLT, on 2 vCPUs.
demo: kernel exitload
	@tests/run-in-vm --vendor $(VENDOR) --add $(EXITLOAD) -- \
		'exitload --cpuid 5000 --io 300 --rdmsr 200 --wrmsr 100 --hlt 50 --vcpus 2 >/dev/null && cat /sys/kernel/debug/kvm/exit_stats'

test: kernel exitload
	$(PYTHON) -m pytest -c tests/pytest.ini tests $(PYTEST_ARGS)

debug-check: deps exitload
	@tests/kernel build-debug
	tests/run-in-vm --vendor $(VENDOR) --kernel $(BUILD)/kdebug/arch/x86/boot/bzImage \
		--log $(BUILD)/debug-$(VENDOR).log --add $(EXITLOAD) --add $(KESIO) \
		--add tests/guest/kes-e2e -- kes-e2e >$(BUILD)/debug-$(VENDOR).out
	@! grep -E 'BUG:|WARNING:|possible circular|KASAN:' $(BUILD)/debug-$(VENDOR).log
	@grep -q '^@@@ end' $(BUILD)/debug-$(VENDOR).out && echo "debug-check: no kernel report on $(VENDOR)"

clean:
	rm -rf $(BUILD)/kobj $(BUILD)/kdebug $(BUILD)/kseries $(EXITLOAD) $(KESIO) tests/__pycache__

distclean:
	rm -rf $(BUILD)
