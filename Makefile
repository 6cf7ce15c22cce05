# kvm-exit-stats -- see README.md.
#
#   make / make viewer build userspace/kvm-exitstat (make install: PREFIX)
#   make demo          boot the patched kernel under emulation and show
#                      exit_stats of a sample guest (VENDOR=svm|vmx|vmx-ept)
#   make test          everything: series checks, KUnit, end-to-end on SVM and VMX
#   make kernel-tree   build/linux: Debian's 6.12.117 + kernel-patch/ as git
#   make series        regenerate kernel-patch/ from build/linux
#   make kernel        build the test kernel (build/kobj)
#   make selftest      build the series' KVM selftest, static
#                      (build/selftest/exit_stats_test)
#   make checkpatch    scripts/checkpatch.pl --strict on the series
#   make check-series  build the kernel at every patch of the series, then
#                      the whole series with CONFIG_KVM_EXIT_STATS=n
#   make debug-check   the debug kernel (lockdep, KASAN, kmemleak, fault
#                      injection, KVM as modules) on a 2-CPU SVM host:
#                      end-to-end scenario, stress, allocation failures,
#                      module reloads; any kernel report fails
#   make stress        tests/test_stress.py in its long form: 300 s storms
#                      (STRESS_SECONDS), and the same storm on 6.12.117 with
#                      KCSAN to tell pre-existing races (make test: 60 s)
#   make bench         per-exit cost of the accounting, unpatched vs. patched
#                      vs. tracepoints, on SVM and VMX; read-side scaling
#                      (Documentation/benchmarks.md, build/bench.json)
#   make deps          install the Debian packages all of this needs

BUILD   ?= build
VENDOR  ?= svm
PYTHON  ?= /usr/bin/python3
CC      ?= gcc
PYTEST_ARGS ?=

export KES_BUILD := $(abspath $(BUILD))

EXITLOAD := $(BUILD)/exitload
KESIO    := $(BUILD)/kes-io
KESBENCH := $(BUILD)/kes-bench
KESVGA   := $(BUILD)/kes-vga
KESSTRESS := $(BUILD)/kes-stress
STRESS_SECONDS ?= 300
SELFTEST := $(BUILD)/selftest/exit_stats_test
GUEST_CFLAGS := -static -O2 -std=gnu11 -Wall -Wextra -Werror

PREFIX  ?= /usr/local
DESTDIR ?=
VIEWER  := userspace/kvm-exitstat
VIEWER_SRC := userspace/kvm-exitstat.c userspace/exitstats.c userspace/exitstats.h
# pkg-config runs in the recipes: `deps` may only just have installed it.
VIEWER_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -O2 -g $$(pkg-config --cflags smartcols)
VIEWER_LIBS := $$(pkg-config --libs smartcols)
ASAN_VIEWER := $(BUILD)/kvm-exitstat-asan
FUZZER  := $(BUILD)/fuzz_parse
FUZZ_SECONDS ?= 60

.PHONY: all viewer install deps kernel-tree series kernel selftest checkpatch \
	check-series exitload demo test debug-check stress bench fuzz clean distclean

all: viewer

viewer: $(VIEWER)

$(VIEWER): $(VIEWER_SRC) | deps
	$(CC) $(VIEWER_CFLAGS) -o $@ userspace/kvm-exitstat.c userspace/exitstats.c $(VIEWER_LIBS)

# The viewer with AddressSanitizer and UBSan, for the tests.
$(ASAN_VIEWER): $(VIEWER_SRC) | deps
	@mkdir -p $(BUILD)
	$(CC) $(VIEWER_CFLAGS) -O1 -fsanitize=address,undefined -fno-sanitize-recover=all \
		-fno-omit-frame-pointer -o $@ userspace/kvm-exitstat.c userspace/exitstats.c $(VIEWER_LIBS)

$(FUZZER): userspace/fuzz/fuzz_parse.c userspace/exitstats.c userspace/exitstats.h | deps
	@mkdir -p $(BUILD)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-o $@ userspace/fuzz/fuzz_parse.c userspace/exitstats.c

# Fuzz the parser for FUZZ_SECONDS (corpus: userspace/fuzz/corpus).
fuzz: $(FUZZER)
	@mkdir -p $(BUILD)/fuzz-corpus
	$(FUZZER) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
		$(BUILD)/fuzz-corpus userspace/fuzz/corpus

install: $(VIEWER)
	install -D -m 0755 $(VIEWER) $(DESTDIR)$(PREFIX)/bin/kvm-exitstat
	install -D -m 0644 userspace/kvm-exitstat.1 $(DESTDIR)$(PREFIX)/share/man/man1/kvm-exitstat.1
	install -D -m 0755 userspace/kvm-exitstat-textfile $(DESTDIR)$(PREFIX)/bin/kvm-exitstat-textfile
	sed "s,/usr/local/bin/,$(PREFIX)/bin/," userspace/systemd/kvm-exitstat-textfile.service | \
		install -D -m 0644 /dev/stdin \
		$(DESTDIR)$(PREFIX)/lib/systemd/system/kvm-exitstat-textfile.service
	install -D -m 0644 userspace/systemd/kvm-exitstat-textfile.timer \
		$(DESTDIR)$(PREFIX)/lib/systemd/system/kvm-exitstat-textfile.timer

deps:
	@tests/install-deps

kernel-tree: deps
	@tests/kernel tree

series:
	@tests/kernel series

kernel: deps
	@tests/kernel build

# tools/testing/selftests/kvm/x86_64/exit_stats_test.c of the series, built
# out of tree (make decides what is stale, so this is cheap when it is not).
selftest: deps
	@tests/kernel tree
	@tests/build-selftest $(BUILD)/linux $(BUILD)/selftest

checkpatch: deps
	@tests/kernel checkpatch

check-series: deps
	@tests/kernel check-series

exitload: $(EXITLOAD) $(KESIO) $(KESVGA) $(KESSTRESS)

$(EXITLOAD): tests/guest/exitload.c tests/guest/guest.h | deps
	@mkdir -p $(BUILD)
	$(CC) $(GUEST_CFLAGS) -pthread -o $@ $<

$(KESIO): tests/guest/kes-io.c | deps
	@mkdir -p $(BUILD)
	$(CC) $(GUEST_CFLAGS) -o $@ $<

$(KESVGA): tests/guest/kes-vga.c | deps
	@mkdir -p $(BUILD)
	$(CC) $(GUEST_CFLAGS) -o $@ $<

$(KESSTRESS): tests/guest/kes-stress.c tests/guest/guest.h | deps
	@mkdir -p $(BUILD)
	$(CC) $(GUEST_CFLAGS) -pthread -o $@ $<

$(KESBENCH): tests/guest/kes-bench.c tests/guest/guest.h | deps
	@mkdir -p $(BUILD)
	$(CC) $(GUEST_CFLAGS) -o $@ $<

# Builds four kernels (cached in build/bench-*), boots each on SVM and VMX.
bench: $(KESBENCH) | deps
	@tests/kernel bench-build
	$(PYTHON) tests/bench.py $(BENCH_ARGS)

# A realistic mix: CPUID, port IO to userspace, MSR accesses, HLT, on 2 vCPUs.
demo: kernel exitload $(VIEWER)
	@tests/run-in-vm --vendor $(VENDOR) --add $(EXITLOAD) --add $(VIEWER) -- \
		'exitload --cpuid 5000 --io 300 --rdmsr 200 --wrmsr 100 --hlt 50 --vcpus 2 >/dev/null && cat /sys/kernel/debug/kvm/exit_stats && echo && kvm-exitstat && echo && kvm-exitstat --hist -t 3'

test: kernel selftest exitload $(VIEWER) $(ASAN_VIEWER) $(FUZZER)
	$(PYTHON) -m pytest -c tests/pytest.ini tests $(PYTEST_ARGS)

# The debug-kernel part of tests/test_stress.py, which make test runs too.
debug-check: selftest exitload $(VIEWER)
	$(PYTHON) -m pytest -c tests/pytest.ini tests/test_stress.py -k debug $(PYTEST_ARGS)

# The long form of tests/test_stress.py (make test runs 60-second storms).
stress: selftest exitload $(VIEWER)
	KES_STRESS_SECONDS=$(STRESS_SECONDS) KES_STRESS_BASELINE=1 \
		$(PYTHON) -m pytest -c tests/pytest.ini tests/test_stress.py $(PYTEST_ARGS)

clean:
	rm -rf $(BUILD)/kobj $(BUILD)/kdebug $(BUILD)/kkcsan $(BUILD)/kkcsan-base $(BUILD)/kseries $(BUILD)/kseries-* \
		$(BUILD)/selftest $(EXITLOAD) $(KESIO) $(KESVGA) $(KESBENCH) $(KESSTRESS) \
		$(VIEWER) $(ASAN_VIEWER) $(FUZZER) tests/__pycache__

distclean:
	rm -rf $(BUILD)
