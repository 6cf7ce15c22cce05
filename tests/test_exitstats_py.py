"""tests/exitstats.py, the parser the end-to-end tests use: versions 1 and 2."""
from __future__ import annotations

import math

import pytest

from conftest import ROOT
from exitstats import V1_LAYOUT, Layout, add, bucket_bounds, parse

DATA = ROOT / "tests" / "data"
KERNEL = Layout(2, 107, 6, 2)


def test_v1_bounds() -> None:
    for b in range(1, 31):
        assert bucket_bounds(V1_LAYOUT, b) == (2 ** (b - 1), 2 ** b)
    assert bucket_bounds(V1_LAYOUT, 31) == (2 ** 30, math.inf)


def test_v2_bounds() -> None:
    assert bucket_bounds(KERNEL, 1) == (1, 64)
    assert [bucket_bounds(KERNEL, b) for b in range(2, 7)] == [
        (64, 80), (80, 96), (96, 112), (112, 128), (128, 160)]
    assert bucket_bounds(KERNEL, 105) == (2 ** 31 + 3 * 2 ** 29, 2 ** 32)
    assert bucket_bounds(KERNEL, 106) == (2 ** 32, math.inf)
    for b in range(2, 107):
        assert bucket_bounds(KERNEL, b)[0] == bucket_bounds(KERNEL, b - 1)[1]
    for b in (0, 107):
        with pytest.raises(ValueError):
            bucket_bounds(KERNEL, b)


@pytest.mark.parametrize("vendor", ["svm", "vmx"])
def test_parse_both_versions(vendor: str) -> None:
    v1 = parse((DATA / f"exit_stats-{vendor}.txt").read_text())
    v2 = parse((DATA / f"exit_stats-v2-{vendor}.txt").read_text())
    assert v1.layout == V1_LAYOUT and v2.layout == KERNEL
    assert v1.header["kvm_exit_stats"] == "1" and "hist_buckets" not in v1.header
    assert (v2.header["kvm_exit_stats"], v2.header["hist_buckets"]) == ("2", "107")
    assert {n: r.count for n, r in v1.rows.items()} == {n: r.count for n, r in v2.rows.items()}
    with pytest.raises(ValueError, match="layouts differ"):
        add(v1, v2)
    assert add(v2, v2)["CPUID" if vendor == "vmx" else "cpuid"].count == 4000


def v2_text(layout: str = "107 6 2", row: str = "10 CPUID 1 500 500 500 500 13:1") -> str:
    n, m, s = layout.split()
    total = "- TOTAL " + row.split(" ", 2)[2]
    return (f"# kvm_exit_stats 2\n# vendor VMX\n# clock tsc\n# tsc_khz 1000\n"
            f"# since_reset_ns 1\n# hist_buckets {n}\n# hist_min_shift {m}\n"
            f"# hist_sub_shift {s}\n# reason name count cycles min avg max hist\n"
            f"{row}\n{total}\n")


@pytest.mark.parametrize("text,message", [
    (v2_text(), None),
    (v2_text().replace("stats 2", "stats 4"), "format version 4"),
    (v2_text().replace("stats 2", "stats 3"), "bad column line"),
    (v2_text().replace("stats 2", "stats 3").replace("max hist", "max fastpath hist")
     .replace("500 13:1", "500 1 13:1"), None),
    (v2_text().replace("stats 2", "stats 3").replace("max hist", "max fastpath hist")
     .replace("500 13:1", "500 2 13:1"), "more fastpath exits than exits"),
    (v2_text().replace("# hist_min_shift 6\n", ""), "expected header hist_min_shift"),
    (v2_text(row="10 CPUID 1 500 500 500 500 107:1"), "beyond 106"),
    (v2_text(row="10 CPUID 2 500 250 250 250 13:1,12:1"), "out of order"),
    (v2_text("108 6 2"), "bad histogram layout"),
    (v2_text("19 2 4"), "bad histogram layout"),
])
def test_parse_errors(text: str, message: str | None) -> None:
    if message is None:
        parse(text)
        return
    with pytest.raises(ValueError, match=message):
        parse(text)
