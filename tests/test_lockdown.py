"""Kernel lockdown: the counters stay readable, the resets are refused.

debugfs refuses, under lockdown, every file that can be written
(fs/debugfs/file.c, debugfs_locked_down()); Secure Boot distributions boot
with lockdown=integrity.  One boot per vendor runs tests/guest/kes-lockdown.
"""
from __future__ import annotations

import pytest

from conftest import GuestRun, boot
from exitstats import parse, parse_detail

pytestmark = pytest.mark.e2e

NAMES = {"svm": ("cpuid", "io", "msr"),
         "vmx-ept": ("CPUID", "IO_INSTRUCTION", "MSR_READ")}


@pytest.fixture(scope="module", params=sorted(NAMES))
def locked(request: pytest.FixtureRequest) -> GuestRun:
    r = boot(request.param, "kes-lockdown", append="lockdown=integrity")
    assert r.status == 0, f"{r.vendor}: run-in-vm exited {r.status}:\n{r.stderr}"
    assert "end" in r.sections, f"{r.vendor}: scenario did not finish:\n{r.stderr}"
    return r


def test_kernel_is_locked_down(locked: GuestRun) -> None:
    assert "[integrity]" in locked["lockdown"]


def test_vm_and_vcpu_files_are_readable(locked: GuestRun) -> None:
    cpuid, io, msr = NAMES[locked.vendor]
    vm = parse(locked["vm"])
    # 2 vCPUs x (100 CPUID, 5 OUT + the 'done' OUT, 3 RDMSR)
    assert {n: vm.count(n) for n in (cpuid, io, msr)} == \
        {cpuid: 200, io: 12, msr: 6}
    for f in ("vcpu0", "vcpu1"):
        assert {n: parse(locked[f]).count(n) for n in (cpuid, io, msr)} == \
            {cpuid: 100, io: 6, msr: 3}
    # KVM's own stats files can be written, so lockdown refuses them.
    assert locked["exits"].strip() == "error EPERM"


def test_detail_file_is_readable(locked: GuestRun) -> None:
    _, io, msr = NAMES[locked.vendor]
    d = parse_detail(locked["vm-detail"])
    assert d.count(io, "out:0x99:1") == 10
    assert d.count(msr, "rdmsr:0x1a0") == 6


def test_resets_are_refused(locked: GuestRun) -> None:
    lines = locked["resets"].splitlines()
    assert [ln.split(" ", 1)[1] for ln in lines] == ["error EPERM"] * 3
    assert lines[0].startswith("exit_stats_reset ")


def test_refused_resets_change_nothing(locked: GuestRun) -> None:
    before, after = parse(locked["host-before"]), parse(locked["host-after"])
    assert {n: r.count for n, r in before.rows.items()} == \
        {n: r.count for n, r in after.rows.items()} == \
        {n: r.count for n, r in parse(locked["vm"]).rows.items()}


def test_viewer_reads_and_explains_the_refused_reset(locked: GuestRun) -> None:
    lines = locked["viewer"].splitlines()
    assert lines[-1] == "status 0"
    counts = {ln.split()[0]: int(ln.split()[1]) for ln in lines[:-1]}
    assert counts[NAMES[locked.vendor][0]] == 200
    out = locked["viewer-reset"]
    assert out.splitlines()[-1] == "status 1"
    assert "locked down" in out and "[integrity]" in out, out


def test_selftest_skips_only_the_reset(locked: GuestRun) -> None:
    out = locked["selftest"]
    assert out.splitlines()[-1] == "status 0", out
    assert "refused (kernel lockdown?)" in out
    assert "# Totals: pass:8 fail:0 xfail:0 xpass:0 skip:5 error:0" in out, out
