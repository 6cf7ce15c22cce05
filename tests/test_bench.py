"""The pure parts of tests/bench.py: guest scripts, parsing, self-checks, goals."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def fake_results(on: float, off: float, read_ratio: float,
                 mem_off: float = 0.0, mem_on: float = 8.0) -> bench.Results:
    kinds = {k: [1000.0, 1000.0, 1001.0] for k in bench.KINDS}
    res: bench.Results = {"exit": {"svm": {
        "unpatched": kinds,
        "stats off": {k: [v + off for v in s] for k, s in kinds.items()},
        "stats on": {k: [v + on for v in s] for k, s in kinds.items()},
        "tracepoints on": {k: [v + 1250 for v in s] for k, s in kinds.items()},
        "ftrace kernel": kinds, "ftrace kernel, stats on": kinds}},
        "read": {"svm": {}},
        "mem": {"svm": {"unpatched": [10000, 10004, 9996],
                        "stats off": [10000 + 64 * mem_off] * 3,
                        "stats on": [10000 + 64 * mem_on] * 3}}}
    for f in bench.READ_FILES:
        scale = read_ratio if "exit_stats" in f else 1.0
        res["read"]["svm"][f] = {str(n): [int(scale * (5000 + 100 * n))] * 3
                                 for n in bench.VCPUS}
    return res


def test_guest_script_runs_every_kind_per_config() -> None:
    s = bench.guest_script("patched", 3)
    # stats off, stats on, stats on with a summary every 500 exits, and
    # without sub-reasons
    assert s.count("kes-bench exit cpuid 20000 3") == 4
    assert f"echo 0 > {bench.DETAIL_PARAM}" in s and f"echo 1 > {bench.DETAIL_PARAM}" in s
    assert f"echo 500 > {bench.LOG_PARAM}" in s and f"echo 0 > {bench.LOG_PARAM}" in s
    assert f"echo 0 > {bench.PARAM}" in s and f"echo 1 > {bench.PARAM}" in s
    assert all(f"kes-bench read {n} 3" in s for n in bench.VCPUS)
    assert "kvm_exit/enable" in bench.guest_script("base-ftrace", 3)
    assert "read" not in bench.guest_script("base", 3)
    # Memory in the three main configs, after the CPUID check's reset.
    assert bench.guest_script("base", 3).count("kes-bench mem 64 5") == 1
    patched = bench.guest_script("patched", 3)
    assert patched.count("kes-bench mem 64 5") == 2
    assert patched.index("exit_stats_reset") < patched.index("kes-bench mem")
    # ... and a reset after it, before the next config counts its CPUIDs.
    after = patched.split("kes-bench mem 64 5")[1]
    assert after.index("exit_stats_reset") < after.index("counted")
    assert "kes-bench mem" not in bench.guest_script("base-ftrace", 3)


def test_parse_collects_samples_and_checks_counts() -> None:
    res: bench.Results = {"exit": {"svm": {}}, "read": {"svm": {}}, "checks": {"svm": {}}}
    out = ("config stats on\nexit cpuid 0 2001.5\nexit cpuid 1 2001.0\n"
           "counted 114 cpuid 60000 1 1 1 1 11:60000\nread exits 64 0 19232\n")
    bench.parse("svm", out, res, 3)
    assert res["exit"]["svm"]["stats on"]["cpuid"] == [2001.5, 2001.0]
    assert res["read"]["svm"]["exits"]["64"] == [19232]
    with pytest.raises(SystemExit, match="counted 59999 CPUID"):
        bench.parse("svm", "config stats on\ncounted 114 cpuid 59999 1\n", res, 3)
    with pytest.raises(SystemExit, match="counted 5 CPUID exits, expected 0"):
        bench.parse("svm", "config stats off\ncounted 114 cpuid 5 1\n", res, 3)
    with pytest.raises(SystemExit, match="nothing was traced"):
        bench.parse("svm", "config tracepoints on\ntraced 0\n", res, 3)


def test_goals_verdicts() -> None:
    good = bench.goals(fake_results(on=28.5, off=2.0, read_ratio=3.0))
    assert "missed" not in good and good.count("met") == 15
    bad = bench.goals(fake_results(on=31.0, off=3.0, read_ratio=12.0,
                                   mem_off=0.5, mem_on=8.5))
    assert "**missed**: SVM: stats on add +31.0 ticks per hlt exit" in bad
    assert "**missed**: SVM: stats off add +3.0 ticks per io exit" in bad
    assert "**missed**: SVM: stats off use +0.50 KiB per vCPU" in bad
    assert "**missed**: SVM: stats on use +8.50 KiB per vCPU" in bad
    assert "**missed**: SVM: reading `exit_stats` with 1024 vCPUs costs 12.0×" in bad


def test_mem_rows_checked() -> None:
    res: bench.Results = {"exit": {"svm": {}}, "read": {"svm": {}}, "checks": {"svm": {}},
                          "mem": {"svm": {}}, "memrows": {"svm": {}}}
    out = ("config stats off\nmem 64 0 9000\nmemrow TOTAL 0\n"
           "config stats on\nmem 64 0 9512\nmemrow cpuid 64\nmemrow io 128\n"
           "memrow msr 128\nmemrow hlt 64\nmemrow npf 66\n")
    bench.parse("svm", out, res, 3)
    assert res["mem"]["svm"]["stats on"] == [9512]
    bench.check_mem_rows(res, "svm")
    res["memrows"]["svm"]["stats on"]["hlt"] = 63
    with pytest.raises(SystemExit, match="hlt counted 63, expected 64"):
        bench.check_mem_rows(res, "svm")
    res["memrows"]["svm"]["stats on"]["hlt"] = 64
    res["memrows"]["svm"]["stats on"]["npf"] = 63
    with pytest.raises(SystemExit, match="fewer than 64 npf exits"):
        bench.check_mem_rows(res, "svm")
    res["memrows"]["svm"]["stats on"]["npf"] = 64
    # VMX: one EPT violation, then EPT misconfigs on the MMIO SPTE.
    res["memrows"]["vmx"] = {"stats on": {
        "CPUID": 64, "IO_INSTRUCTION": 128, "MSR_READ": 64, "MSR_WRITE": 64,
        "HLT": 64, "EPT_VIOLATION": 3, "EPT_MISCONFIG": 63}}
    bench.check_mem_rows(res, "vmx")
    res["memrows"]["svm"]["stats off"]["cpuid"] = 64
    res["memrows"]["svm"]["stats off"]["TOTAL"] = 64
    with pytest.raises(SystemExit, match="counted without stats"):
        bench.check_mem_rows(res, "svm")


def test_table_shows_median_range_and_delta() -> None:
    md = bench.markdown(fake_results(on=28.0, off=1.0, read_ratio=3.0))
    assert "| cpuid | 1000.0 (1000.0–1001.0) | 1001.0 (1001.0–1002.0) | " \
           "1028.0 (1028.0–1029.0) | 2250.0 (2250.0–2251.0) | +1.0 | +28.0 | +1250.0 |" in md
    assert "| 1024 | 107400 | 322200 | 107400 | 322200 | 3.0 | 3.0 |" in md
    assert "| KiB per vCPU | 156.25 | 156.25 | 164.25 | +0.00 | +8.00 |" in md
