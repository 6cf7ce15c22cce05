"""kvm.exit_stats=0 on the kernel command line: off from boot, on at run
time; kvm.exit_stats_log=500 with it."""
from __future__ import annotations

import pytest

from conftest import boot
from exitstats import parse, summaries

pytestmark = pytest.mark.e2e


def test_accounting_off_from_boot_then_on() -> None:
    run = boot("svm", "kes-boot-off", "kvm.exit_stats=0 kvm.exit_stats_log=500")
    assert run.status == 0, run.stderr
    assert run["param"].strip() == "N"
    off = parse(run["off"])
    assert off.rows == {} and off.total.count == 0
    # While off, a vCPU has no files (and no counters): no memory at all.
    off_files = run["files-off"].split()
    assert "exit_stats" in off_files and "pid" in off_files, off_files
    assert off_files.count("exit_stats") == 1          # the VM's only
    assert off_files.count("exit_stats_reset") == 1
    # Switching on creates them for the live VM's vCPUs, with new counters.
    on_files = run["files-on"].split()
    assert on_files.count("exit_stats") == 3, on_files  # VM, vcpu0, vcpu1
    assert on_files.count("exit_stats_reset") == 3, on_files
    live = parse(run["live-vcpu0"])
    assert live.rows == {} and live.total.count == 0
    on = parse(run["on"])
    assert on.count("cpuid") == 5
    assert on.count("io") == 1


def test_log_summaries_from_the_command_line() -> None:
    run = boot("svm", "kes-boot-off", "kvm.exit_stats=0 kvm.exit_stats_log=500")
    assert run.status == 0, run.stderr
    assert run["log-param"].strip() == "500"
    # Accounting off at boot: the exits of the first VMs were not counted,
    # and none was logged.
    assert run["log-off"].strip() == "0"
    got = summaries(run["log-on"])
    assert [rows["TOTAL"].count for _, rows in got] == [500, 1000]
    assert [head[1:] for head, _ in got] == [(0, 500)] * 2
    # 2 NPFs (first touch), then the CPUIDs, then the OUTs.
    assert got[-1][1]["cpuid"].count == 949
