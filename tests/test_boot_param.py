"""kvm.exit_stats=0 on the kernel command line: off from boot, on at run time."""
from __future__ import annotations

import pytest

from conftest import boot
from exitstats import parse

pytestmark = pytest.mark.e2e


def test_accounting_off_from_boot_then_on() -> None:
    run = boot("svm", "kes-boot-off", "kvm.exit_stats=0")
    assert run.status == 0, run.stderr
    assert run["param"].strip() == "N"
    off = parse(run["off"])
    assert off.rows == {} and off.total.count == 0
    on = parse(run["on"])
    assert on.count("cpuid") == 5
    assert on.count("io") == 1
