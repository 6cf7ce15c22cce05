"""The end-to-end scenario on a lockdep + KASAN kernel: no kernel report."""
from __future__ import annotations

import re
import subprocess

import pytest

from conftest import BUILD, ROOT, boot, dumps
from exitstats import parse

pytestmark = pytest.mark.e2e

REPORT = re.compile(r"BUG:|WARNING:|possible circular|KASAN:|inconsistent lock")


def test_no_lockdep_or_kasan_report() -> None:
    b = subprocess.run([str(ROOT / "tests" / "kernel"), "build-debug"],
                       capture_output=True, text=True)
    assert b.returncode == 0, b.stderr
    kernel = BUILD / "kdebug" / "arch" / "x86" / "boot" / "bzImage"
    # ignore_loglevel: every report reaches the console, boot included.
    run = boot("svm", "kes-e2e", append="ignore_loglevel", kernel=kernel)
    assert run.status == 0, run.stderr
    assert "end" in run.sections
    assert "Linux version" in run.console
    assert "KES-status 0" in run.console
    assert not REPORT.findall(run.console), run.console[-3000:]
    # The debug build must still count exactly.
    vm = parse(dumps(run["A"])["exit_stats"])
    assert vm.count("cpuid") == 2000 and vm.count("msr") == 60
