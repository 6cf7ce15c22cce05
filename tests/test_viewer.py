"""kvm-exitstat on saved exit_stats files: golden output, formats, errors.

Each test runs against the normal build and the ASan+UBSan build.  Set
UPDATE_GOLDEN=1 to rewrite tests/data/golden/ after a deliberate change.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BUILD, ROOT
from exitstats import Layout, bucket_bounds, parse, quantile

DATA = ROOT / "tests" / "data"
GOLDEN = DATA / "golden"
# Format version 1 (saved from booted kernels) and 2 (synthetic: the same
# exits in the buckets of format version 2, until a booted kernel's files
# replace them; then regenerate the goldens with UPDATE_GOLDEN=1).
SAMPLES = {"svm": DATA / "exit_stats-svm.txt", "vmx": DATA / "exit_stats-vmx.txt",
           "v2-svm": DATA / "exit_stats-v2-svm.txt",
           "v2-vmx": DATA / "exit_stats-v2-vmx.txt",
           # Real output of `make demo VENDOR=vmx` with series v3.
           "v2-vmx-demo": DATA / "exit_stats-v2-vmx-demo.txt",
           # Format version 3 (series v5): the nested guest of the SVM
           # end-to-end run, L2 rows included.
           "v3-svm-nested": DATA / "exit_stats-v3-svm-nested.txt"}
BINARIES = {"plain": ROOT / "userspace" / "kvm-exitstat",
            "asan": BUILD / "kvm-exitstat-asan"}

GOLDEN_CASES = {
    "default": [],
    "us-total-nr": ["-u", "us", "-s", "total", "-o", "+NR,P90"],
    "raw-name-top3": ["--raw", "-s", "name", "-r", "-t", "3"],
    "noheadings-asc": ["-n", "-o", "REASON,COUNT", "-s", "-count"],
    "raw-all": ["-z", "--raw", "-o",
                "REASON,NR,COUNT,COUNT%,RATE,TOTAL,TIME%,MIN,AVG,MAX,P50,P90,P99"],
    "ms-reason": ["-u", "ms", "-s", "reason"],
}


@pytest.fixture(params=sorted(BINARIES), scope="module")
def viewer(request: pytest.FixtureRequest) -> Path:
    b = BINARIES[request.param]
    assert b.exists(), f"{b} missing: run make test"
    return b


def plain(row: dict) -> dict:
    """A JSON row without the time fields that -J adds in cycles and ns."""
    return {k: v for k, v in row.items() if not k.endswith(("_cycles", "_ns"))}


def run_live(viewer: Path, f: Path, rewrites: list[tuple[float, str]],
             *args: str) -> subprocess.CompletedProcess[str]:
    """Run the viewer on @f while a thread rewrites it: each (delay, text)
    of @rewrites that long after the previous one."""
    def writer() -> None:
        for delay, text in rewrites:
            time.sleep(delay)
            f.write_text(text)

    t = threading.Thread(target=writer)
    t.start()
    try:
        return run(viewer, "-f", str(f), *args)
    finally:
        t.join()


def run(viewer: Path, *args: str, stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TZ="UTC",
               ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=99",
               UBSAN_OPTIONS="halt_on_error=1:exitcode=99", **(env or {}))
    p = subprocess.run([str(viewer), *args], capture_output=True, env=env,
                       input=stdin, timeout=60, cwd=cwd)
    assert p.returncode != 99, p.stderr.decode(errors="replace")
    return subprocess.CompletedProcess(p.args, p.returncode,
                                       p.stdout.decode(errors="replace"),
                                       p.stderr.decode(errors="replace"))


@pytest.mark.parametrize("vendor", sorted(SAMPLES))
@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden(viewer: Path, vendor: str, case: str) -> None:
    p = run(viewer, "-f", str(SAMPLES[vendor]), *GOLDEN_CASES[case])
    assert p.returncode == 0, p.stderr
    golden = GOLDEN / f"{vendor}-{case}.out"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(p.stdout)
    assert p.stdout == golden.read_text()


@pytest.mark.parametrize("vendor", sorted(SAMPLES))
def test_json_matches_input(viewer: Path, vendor: str) -> None:
    src = parse(SAMPLES[vendor].read_text())
    p = run(viewer, "-f", str(SAMPLES[vendor]), "-J", "--raw", "-o",
            "REASON,NR,COUNT,COUNT%,TOTAL,TIME%,MIN,AVG,MAX,P50,P99")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)["exit_stats"]
    assert [r["reason"] for r in rows[:-1]] == [
        r.name for r in sorted(src.rows.values(), key=lambda r: (-r.count, r.name))]
    for r in rows:
        want = src.total if r["reason"] == "TOTAL" else src.rows[r["reason"]]
        assert r["nr"] == want.reason
        assert (r["count"], r["total"], r["min"], r["avg"], r["max"]) == \
            (want.count, want.cycles, want.min, want.avg, want.max)
        assert want.min <= r["p50"] <= r["p99"] <= want.max
        assert (r["p50"], r["p99"]) == (quantile(want, 0.5, src.layout),
                                        quantile(want, 0.99, src.layout))
        assert r["count%"] == pytest.approx(100 * want.count / src.total.count, abs=0.005)
    assert sum(r["count%"] for r in rows[:-1]) == pytest.approx(100, abs=0.1)


def test_json_time_units(viewer: Path) -> None:
    src = parse(SAMPLES["vmx"].read_text())
    khz = int(src.header["tsc_khz"])
    p = run(viewer, "-f", str(SAMPLES["vmx"]), "-J", "-u", "us", "-o", "REASON,TOTAL")
    for r in json.loads(p.stdout)["exit_stats"]:
        want = src.total if r["reason"] == "TOTAL" else src.rows[r["reason"]]
        assert r["total"] == pytest.approx(want.cycles * 1e3 / khz, abs=0.001)


@pytest.mark.parametrize("vendor", sorted(SAMPLES))
def test_csv(viewer: Path, vendor: str) -> None:
    src = parse(SAMPLES[vendor].read_text())
    p = run(viewer, "-f", str(SAMPLES[vendor]), "--csv", "--raw", "-o",
            "REASON,NR,COUNT,TOTAL,MAX")
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert len(rows) == len(src.rows) + 1
    for r in rows:
        want = src.total if r["REASON"] == "TOTAL" else src.rows[r["REASON"]]
        assert r["NR"] == ("" if want.reason is None else str(want.reason))
        assert (int(r["COUNT"]), int(r["TOTAL"]), int(r["MAX"])) == \
            (want.count, want.cycles, want.max)


def test_csv_quotes_fields(viewer: Path, tmp_path: Path) -> None:
    text = SAMPLES["svm"].read_text().replace("\n114 cpuid ", '\n114 cp,"u ')
    f = tmp_path / "q.txt"
    f.write_text(text)
    p = run(viewer, "-f", str(f), "--csv", "-o", "REASON")
    assert '"cp,""u"' in p.stdout
    assert any(r == ['cp,"u'] for r in csv.reader(io.StringIO(p.stdout)))


PROM = re.compile(r'^(\w+)\{vendor="(\w+)",reason="([^"]+)"(?:,nr="(\d+)")?(?:,le="([^"]+)")?\} (\S+)$')


@pytest.mark.parametrize("vendor", sorted(SAMPLES) + ["unmeasured"])
def test_prometheus(viewer: Path, vendor: str, tmp_path: Path) -> None:
    sample = SAMPLES.get(vendor)
    if not sample:  # exits without a time: in kvm_exits_total, not the histogram
        sample = tmp_path / "unmeasured.txt"
        sample.write_text(UNMEASURED)
        vendor = "vmx"
    src = parse(sample.read_text())
    hz = int(src.header["tsc_khz"]) * 1000
    vendor = src.header["vendor"]
    p = run(viewer, "-f", str(sample), "--prometheus")
    assert p.returncode == 0, p.stderr
    check = subprocess.run(["promtool", "check", "metrics"], input=p.stdout,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    buckets: dict[str, list[tuple[float, int]]] = {}
    seen = set()
    for line in p.stdout.splitlines():
        if line.startswith("#"):
            continue
        m = PROM.match(line)
        assert m, line
        metric, v, reason, nr, le, value = m.groups()
        assert v == vendor
        row = src.rows[reason]
        assert nr == (None if row.reason is None else str(row.reason))
        seen.add((metric, reason))
        if metric == "kvm_exits_total":
            assert int(value) == row.count
        elif metric == "kvm_exit_handling_seconds_bucket":
            buckets.setdefault(reason, []).append(
                (float("inf") if le == "+Inf" else float(le), int(value)))
        elif metric == "kvm_exit_handling_seconds_sum":
            assert float(value) == pytest.approx(row.cycles / hz, rel=1e-6)
        elif metric == "kvm_exit_handling_seconds_count":
            assert int(value) == row.count - row.hist.get(0, 0)
    for reason, row in src.rows.items():
        b = buckets[reason]
        assert len(b) == src.layout.buckets, "an le per bucket, and 1 cycle"
        assert [c for _, c in b] == sorted(c for _, c in b), "cumulative"
        assert b[-1] == (float("inf"), row.count - row.hist.get(0, 0))
        les = [1] + [bucket_bounds(src.layout, k)[1] for k in range(1, src.layout.buckets - 1)]
        for (le, cum), bound in zip(b[:-1], les):
            assert le == pytest.approx(bound / hz, rel=1e-5), (reason, le)
            # measured exits below le seconds: the buckets that end there
            want = sum(n for k, n in row.hist.items()
                       if k and bucket_bounds(src.layout, k)[1] <= le * hz * (1 + 1e-5))
            assert cum == want, (reason, le)
        assert ("kvm_exit_handling_seconds_count", reason) in seen


def test_stdin(viewer: Path) -> None:
    text = SAMPLES["vmx"].read_bytes()
    p = run(viewer, "-f", "-", "--raw", "-o", "REASON,COUNT", "-n", stdin=text)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[:2] == ["CPUID", "2000"]


@pytest.mark.parametrize("key,reverse", [
    ("count", False), ("-count", True), ("total", False), ("avg", False),
    ("max", False), ("min", False), ("p99", False), ("name", False),
    ("reason", False)])
def test_sort(viewer: Path, key: str, reverse: bool) -> None:
    src = parse(SAMPLES["svm"].read_text())
    p = run(viewer, "-f", str(SAMPLES["svm"]), "-s", key, "-n", "-o", "REASON")
    names = p.stdout.split()[:-1]
    k = key.lstrip("-")
    attr = {"total": "cycles"}.get(k, k)

    def order(r):  # largest first for numbers, smallest first for name/reason
        if k == "name":
            return (r.name,)
        if k == "reason":
            return (r.reason, r.name)
        if k == "p99":
            return (-quantile(r, 0.99, src.layout), r.name)
        return (-getattr(r, attr), r.name)
    want = [r.name for r in sorted(src.rows.values(), key=order)]
    assert names == (want[::-1] if reverse else want)
    r = run(viewer, "-f", str(SAMPLES["svm"]), "-s", key, "-r", "-n", "-o", "REASON")
    assert r.stdout.split()[:-1] == names[::-1]


def test_top_keeps_total(viewer: Path) -> None:
    p = run(viewer, "-f", str(SAMPLES["vmx"]), "-t", "2", "-n", "-o", "REASON,COUNT")
    lines = p.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["CPUID", "IO_INSTRUCTION", "TOTAL"]
    assert lines[-1].split()[1] == "2173"


def test_help_and_version(viewer: Path) -> None:
    p = run(viewer, "--help")
    assert p.returncode == 0
    for word in ("REASON", "COUNT%", "P99", "RATE", "count", "p99", "reason",
                 "--prometheus", "--interval", "--reset", "kvm-exitstat(1)"):
        assert word in p.stdout
    v = run(viewer, "-V")
    assert v.returncode == 0 and re.match(r"^kvm-exitstat \d+\.\d+\.\d+$", v.stdout.strip())


@pytest.mark.parametrize("args,message", [
    (["--bogus"], "unrecognized option"),
    (["-o", "REASON,NOPE"], "unknown column 'NOPE'"),
    (["-o", ""], "empty column list"),
    (["-o", "REASON,"], "trailing ','"),
    (["-s", "speed"], "unknown sort key 'speed'"),
    (["-u", "s"], "unknown unit 's'"),
    (["-c", "3"], "--count needs --interval"),
    (["-i", "0"], "invalid interval '0'"),
    (["-i", "abc"], "invalid interval 'abc'"),
    (["-t", "-1"], "invalid row count '-1'"),
    (["-p", "x"], "invalid PID 'x'"),
    (["--vcpu", "1"], "--vcpu needs --vm"),
    (["--vm", "../x"], "invalid VM '../x'"),
    (["-J", "--csv"], "mutually exclusive"),
    (["--raw", "-u", "ns"], "--raw shows cycles"),
    (["-f", "x", "--vm", "1-2"], "mutually exclusive"),
    (["--reset", "-J"], "--reset only takes a scope"),
    (["--prometheus", "-o", "COUNT"], "fixed output"),
    (["extra"], "unexpected argument 'extra'"),
])
def test_usage_errors(viewer: Path, args: list[str], message: str) -> None:
    p = run(viewer, *args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert message in p.stderr
    assert p.stdout == ""


COLUMNS_V3 = "# reason name count cycles min avg max fastpath hist\n"


def header(version: str = "1", hist: str = "",
           columns: str = "# reason name count cycles min avg max hist\n") -> str:
    """The header of a file; @hist: version 2's hist_* lines (or others)."""
    return (f"# kvm_exit_stats {version}\n# vendor VMX\n# clock tsc\n"
            "# tsc_khz 1000\n# since_reset_ns 5\n" + hist + columns)


def header3() -> str:
    return header("3", hist_lines(), COLUMNS_V3)


def hist_lines(buckets: object = 107, min_shift: object = 6, sub_shift: object = 2) -> str:
    return (f"# hist_buckets {buckets}\n# hist_min_shift {min_shift}\n"
            f"# hist_sub_shift {sub_shift}\n")


def header2(**layout: object) -> str:
    return header("2", hist_lines(**layout))


ROW = "10 CPUID 2 30 10 15 20 4:1,5:1\n"
TOTAL = "- TOTAL 2 30 10 15 20 4:1,5:1\n"

MALFORMED = {
    "empty": (b"", "empty input"),
    "truncated-line": ((header() + ROW + TOTAL)[:-1].encode(), "truncated line"),
    "truncated-file": ((header() + ROW).encode(), "missing '- TOTAL' line"),
    "cut-in-header": (header()[:40].encode(), "line 3:"),
    "wrong-version": ((header("4", hist_lines()) + TOTAL).encode(),
                      "line 1: format version 4, this kvm-exitstat reads versions 1 to 3"),
    "version-0": ((header("0") + TOTAL).encode(),
                  "line 1: format version 0, this kvm-exitstat reads versions 1 to 3"),
    # format version 3: a fastpath field after max
    "v3-v2-columns": ((header("3", hist_lines()) + TOTAL).encode(),
                      "line 9: expected column line '# reason name count cycles min avg max fastpath hist'"),
    "v2-v3-columns": ((header("2", hist_lines(), COLUMNS_V3) + TOTAL).encode(),
                      "line 9: expected column line '# reason name count cycles min avg max hist'"),
    "v3-no-fastpath": ((header3() + "10 CPUID 2 30 10 15 20 4:1,5:1\n").encode(),
                       "line 10: bad number '4:1,5:1'"),
    "v3-short-row": ((header3() + "10 CPUID 2 30 10 15 20\n").encode(),
                     "line 10: expected 9 fields (reason name count cycles min avg max fastpath hist)"),
    "v3-extra-field": ((header3() + "10 CPUID 2 30 10 15 20 1 4:1,5:1 x\n").encode(),
                       "line 10: expected 9 fields"),
    "v3-fastpath-gt-count": ((header3() + "10 CPUID 2 30 10 15 20 3 4:1,5:1\n").encode(),
                             "line 10: more fastpath exits than exits"),
    "v3-total-no-fastpath": ((header3() + "- TOTAL 0 0 0 0 0\n").encode(),
                             "line 10: expected 9 fields"),
    "not-exit-stats": (b"hello world\n", "not a kvm exit_stats file"),
    "u64-overflow": ((header() + "10 CPUID 18446744073709551616 30 10 15 20 4:1,5:1\n" + TOTAL).encode(),
                     "not a 64-bit unsigned integer"),
    "missing-columns": ((header() + "10 CPUID 2 30 10\n" + TOTAL).encode(), "expected 8 fields"),
    "extra-columns": ((header() + "10 CPUID 2 30 10 15 20 4:1,5:1 x\n" + TOTAL).encode(), "expected 8 fields"),
    "hist-mismatch": ((header() + "10 CPUID 2 30 10 15 20 4:1\n" + TOTAL).encode(), "do not add up"),
    "min-gt-max": ((header() + "10 CPUID 2 30 30 15 20 4:1,5:1\n" + TOTAL).encode(), "min <= avg <= max"),
    "bucket-range": ((header() + "10 CPUID 2 30 10 15 20 4:1,32:1\n" + TOTAL).encode(),
                     "line 7: histogram bucket 32 out of range (the file has 32 buckets, 0..31)"),
    "bucket-order": ((header() + "10 CPUID 2 30 10 15 20 5:1,4:1\n" + TOTAL).encode(),
                     "line 7: histogram bucket 4 out of order (after bucket 5)"),
    "bucket-repeated": ((header() + "10 CPUID 2 30 10 15 20 4:1,4:1\n" + TOTAL).encode(),
                        "line 7: histogram bucket 4 out of order (after bucket 4)"),
    # format version 2
    "v2-bucket-range": ((header2() + "10 CPUID 2 30 10 15 20 4:1,107:1\n" + TOTAL).encode(),
                        "line 10: histogram bucket 107 out of range (the file has 107 buckets, 0..106)"),
    "v2-bucket-range-small": ((header2(buckets=7, sub_shift=2)
                               + "10 CPUID 2 30 10 15 20 4:1,7:1\n" + TOTAL).encode(),
                              "line 10: histogram bucket 7 out of range (the file has 7 buckets, 0..6)"),
    "v2-no-hist-lines": ((header("2") + TOTAL).encode(),
                         "line 6: missing header '# hist_buckets' (format version 2)"),
    "v2-missing-sub-shift": ((header("2", hist_lines().rsplit("# hist_sub", 1)[0]) + TOTAL).encode(),
                             "line 8: missing header '# hist_sub_shift' (format version 2)"),
    "v2-out-of-order": ((header("2", "# hist_min_shift 6\n# hist_buckets 107\n# hist_sub_shift 2\n")
                         + TOTAL).encode(),
                        "line 6: header '# hist_min_shift' out of order or repeated (expected '# hist_buckets')"),
    "v2-unknown-header": ((header("2", "# hist_bukets 107\n") + TOTAL).encode(),
                          "line 6: unknown header '# hist_bukets' (expected '# hist_buckets')"),
    "v2-extra-header": ((header("2", hist_lines() + "# hist_max_shift 32\n") + TOTAL).encode(),
                        "line 9: unknown header '# hist_max_shift' (expected the column line"),
    "v2-repeated-header": ((header("2", hist_lines() + "# hist_sub_shift 2\n") + TOTAL).encode(),
                           "line 9: header '# hist_sub_shift' repeated"),
    "v2-header-before-since": ((header("2").replace("# since_reset_ns 5\n", hist_lines())
                                + TOTAL).encode(),
                               "line 5: header '# hist_buckets' out of order or repeated (expected '# since_reset_ns')"),
    "v1-with-hist-lines": ((header("1", hist_lines()) + TOTAL).encode(),
                           "line 6: header '# hist_buckets' is not part of format version 1"),
    "v2-hist-no-value": ((header("2", "# hist_buckets\n") + TOTAL).encode(),
                         "line 6: expected header '# hist_buckets VALUE'"),
    "v2-buckets-not-a-number": ((header2(buckets="1o7") + TOTAL).encode(),
                                "line 6: bad hist_buckets '1o7' (expected 3..256)"),
    "v2-buckets-too-few": ((header2(buckets=2) + TOTAL).encode(),
                           "line 6: bad hist_buckets '2' (expected 3..256)"),
    "v2-buckets-too-many": ((header2(buckets=259, sub_shift=0) + TOTAL).encode(),
                            "line 6: bad hist_buckets '259' (expected 3..256)"),
    "v2-min-shift-0": ((header2(min_shift=0) + TOTAL).encode(),
                       "line 7: bad hist_min_shift '0' (expected 1..20)"),
    "v2-min-shift-21": ((header2(min_shift=21) + TOTAL).encode(),
                        "line 7: bad hist_min_shift '21' (expected 1..20)"),
    "v2-sub-shift-5": ((header2(sub_shift=5) + TOTAL).encode(),
                       "line 8: bad hist_sub_shift '5' (expected 0..4)"),
    "v2-buckets-not-multiple": ((header2(buckets=108) + TOTAL).encode(),
                                "line 8: bad histogram layout: hist_buckets 108 does not fit "
                                "hist_sub_shift 2: hist_buckets - 3 must be a multiple of 4"),
    "v2-beyond-2^63": ((header2(buckets=179, min_shift=20) + TOTAL).encode(),
                       "line 8: bad histogram layout: hist_buckets 179 with hist_min_shift 20: "
                       "buckets beyond 2^63 cycles"),
    "v2-sub-shift-gt-min": ((header2(buckets=19, min_shift=2, sub_shift=4) + TOTAL).encode(),
                            "line 8: bad histogram layout: hist_sub_shift 4 larger than "
                            "hist_min_shift 2"),
    "binary": (bytes(range(256)) * 64, "line 1:"),
    "nul-in-row": ((header() + "10 CP\0UID 2 30 10 15 20 4:1,5:1\n" + TOTAL).encode(), "bad exit reason name"),
    "after-total": ((header() + TOTAL + ROW).encode(), "data after the TOTAL line"),
    "bad-vendor": (header().replace("VMX", "ARM").encode(), "vendor must be VMX or SVM"),
    "garbage-10mb": (b"\xff\x00garbage " * (10 * 1024 * 1024 // 10), "line 1:"),
    "too-large": (b"#" * (17 * 1024 * 1024), "larger than 16 MiB"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input(viewer: Path, tmp_path: Path, case: str) -> None:
    data, message = MALFORMED[case]
    f = tmp_path / f"{case}.txt"
    f.write_bytes(data)
    p = run(viewer, "-f", str(f))
    assert p.returncode == 1, (case, p.stdout[:200], p.stderr)
    assert p.stderr.startswith(f"kvm-exitstat: {f}: "), p.stderr
    assert message in p.stderr, p.stderr
    assert p.stdout == ""


def test_missing_file(viewer: Path, tmp_path: Path) -> None:
    p = run(viewer, "-f", str(tmp_path / "nope"))
    assert p.returncode == 1
    assert p.stderr == f"kvm-exitstat: {tmp_path / 'nope'}: No such file or directory\n"


def test_write_error_is_reported(viewer: Path) -> None:
    with open("/dev/full", "w") as full:
        p = subprocess.run([str(viewer), "-f", str(SAMPLES["vmx"])], stdout=full,
                           stderr=subprocess.PIPE, text=True)
    assert p.returncode == 1
    assert "write error" in p.stderr


def test_live_mode_deltas_and_reset(viewer: Path, tmp_path: Path) -> None:
    base = SAMPLES["vmx"].read_text()
    f = tmp_path / "live.txt"

    def with_cpuid(n: int, since: int) -> str:
        text = re.sub(r"^10 CPUID \d+ (\d+)", lambda m: f"10 CPUID {n} {m.group(1)}",
                      base, flags=re.M)
        text = re.sub(r"since_reset_ns \d+", f"since_reset_ns {since}", text)
        # keep the histogram consistent with the count
        return re.sub(r"^(10 CPUID \d+ \d+ \d+ \d+ \d+ )\S+",
                      lambda m: m.group(1) + f"9:{n}", text, flags=re.M)

    f.write_text(with_cpuid(2000, 1_000_000_000))

    p = run_live(viewer, f, [(0.3, with_cpuid(2500, 2_000_000_000)),
                             # counters were reset
                             (0.6, with_cpuid(100, 500_000_000))],
                 "-i", "0.6", "-c", "2", "--raw", "-o", "REASON,COUNT,RATE")
    assert p.returncode == 0, p.stderr
    blocks = [b.splitlines() for b in p.stdout.strip().split("\n\n")]
    assert len(blocks) == 2
    first = {ln.split()[0]: ln.split()[1:] for ln in blocks[0][2:]}
    assert first["CPUID"] == ["500", "500.0"]  # 500 exits in 1 s
    assert first["HLT"][0] == "0"
    assert "(counters were reset)" in blocks[1][0]
    second = {ln.split()[0]: ln.split()[1:] for ln in blocks[1][2:]}
    assert second["CPUID"] == ["100", "200.0"]  # since the reset, 0.5 s
    assert not re.search(r"\s-\d", p.stdout), "no negative numbers"


def test_interval_stops_on_sigint(viewer: Path) -> None:
    p = subprocess.Popen([str(viewer), "-f", str(SAMPLES["vmx"]), "-i", "0.2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.7)
    p.send_signal(2)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    assert out.count("REASON") >= 2


def test_big_input_is_fast(viewer: Path, tmp_path: Path) -> None:
    """All reasons of a 1000-vCPU host: parse and print in well under 1 s."""
    rows = []
    total = [0, 0]
    for nr in range(0, 76):
        count, cycles = 10**9 + nr, 10**12 + nr * 1000
        rows.append(f"{nr} R{nr} {count} {cycles} 100 {cycles // count} 99999999 "
                    + ",".join(f"{b}:{count // 31 + (count % 31 if b == 30 else 0)}"
                               for b in range(0, 31)) + "\n")
        total[0] += count
        total[1] += cycles
    text = header() + "".join(rows)
    text += f"- TOTAL {total[0]} {total[1]} 100 {total[1] // total[0]} 99999999 " + \
        ",".join(f"{b}:{sum(int(r.split()[7].split(',')[b].split(':')[1]) for r in rows)}"
                 for b in range(31)) + "\n"
    f = tmp_path / "big.txt"
    f.write_text(text)
    start = time.monotonic()
    p = run(viewer, "-f", str(f))
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 78
    assert time.monotonic() - start < 5


def test_fuzz_parser_for_a_while() -> None:
    fuzzer = BUILD / "fuzz_parse"
    corpus = BUILD / "fuzz-corpus"
    corpus.mkdir(exist_ok=True)
    seconds = os.environ.get("FUZZ_SECONDS", "60")
    p = subprocess.run([str(fuzzer), f"-max_total_time={seconds}",
                        "-print_final_stats=1", "-timeout=5", str(corpus),
                        str(ROOT / "userspace" / "fuzz" / "corpus")],
                       capture_output=True, text=True, cwd=BUILD)
    assert p.returncode == 0, p.stderr[-3000:]
    m = re.search(r"stat::number_of_executed_units: (\d+)", p.stderr)
    assert m and int(m.group(1)) > 10000, p.stderr[-2000:]
    (BUILD / "fuzz-stats.txt").write_text(m.group(0) + "\n")


def test_man_page_renders() -> None:
    if not shutil.which("man"):
        pytest.fail("man(1) is missing: apt-get install man-db")
    p = subprocess.run(["man", "-l", "-P", "cat", str(ROOT / "userspace" / "kvm-exitstat.1")],
                       capture_output=True, text=True, env=dict(os.environ, MANWIDTH="80"))
    assert p.returncode == 0, p.stderr
    for section in ("NAME", "SYNOPSIS", "OPTIONS", "OUTPUT COLUMNS", "EXIT STATUS",
                    "FILES", "EXAMPLES", "SEE ALSO"):
        assert re.search(rf"^{section}$", p.stdout, re.M), section
    assert "perf-kvm(1)" in p.stdout and "kvm_stat(1)" in p.stdout
    assert "warning" not in p.stderr


def test_help_matches_man_page(viewer: Path) -> None:
    """Every long option and column of --help is in the man page."""
    helptext = run(viewer, "--help").stdout
    man = (ROOT / "userspace" / "kvm-exitstat.1").read_text().replace("\\-", "-")
    options = set(re.findall(r"(--[a-z][a-z-]+)", helptext))
    assert "--reset" in options and len(options) > 15
    for opt in sorted(options):
        assert opt in man, opt
    for col in re.findall(r"^ +([A-Z0-9%]+)  ", helptext, re.M):
        assert col in man, col


# ----- exits without a measured time (histogram bucket 0), extra rows -----

def stats_text(*rows: str, since: int = 5) -> str:
    """An exit_stats file (VMX, tsc_khz 1000) of @rows and their TOTAL."""
    count = cycles = 0
    mins, maxs, hist = [], [], {}
    for r in rows:
        f = r.split()
        c, cy, mn, _, mx = map(int, f[2:7])
        h = {int(b): int(n) for b, n in (p.split(":") for p in f[7].split(","))}
        count += c
        cycles += cy
        if c > h.get(0, 0):
            mins.append(mn)
            maxs.append(mx)
        for b, n in h.items():
            hist[b] = hist.get(b, 0) + n
    measured = count - hist.get(0, 0)
    total = (f"- TOTAL {count} {cycles} {min(mins, default=0)} "
             f"{cycles // measured if measured else 0} {max(maxs, default=0)} "
             + ",".join(f"{b}:{hist[b]}" for b in sorted(hist)))
    return (header().replace("since_reset_ns 5", f"since_reset_ns {since}")
            + "".join(r + "\n" for r in rows) + total + "\n")


UNMEASURED_ROWS = [
    "1 EXTERNAL_INTERRUPT 4 0 0 0 0 0:4",          # no exit measured
    "10 CPUID 10 1400 150 200 250 0:3,8:7",         # avg 1400 / 7
    "12 HLT 10 800 150 200 250 0:6,8:4",            # most exits unmeasured
    "- FAILED_ENTRY 1 5000 5000 5000 5000 13:1",
    "- INVALID_STATE_EMULATED 3 3000 900 1000 1100 10:2,11:1",
]
UNMEASURED = stats_text(*UNMEASURED_ROWS)
ALL_COLS = "REASON,NR,COUNT,COUNT%,TOTAL,TIME%,MIN,AVG,MAX,P50,P90,P99"


def test_unmeasured_exits_and_extra_rows(viewer: Path, tmp_path: Path) -> None:
    f = tmp_path / "u.txt"
    f.write_text(UNMEASURED)
    assert "- TOTAL 28 10200 150 680 5000 0:13,8:11,10:2,11:1,13:1\n" in UNMEASURED
    p = run(viewer, "-f", str(f), "-J", "--raw", "-o", ALL_COLS)
    assert p.returncode == 0, p.stderr
    rows = {r["reason"]: r for r in json.loads(p.stdout)["exit_stats"]}
    ext = rows["EXTERNAL_INTERRUPT"]
    assert (ext["count"], ext["total"]) == (4, 0)
    assert [ext[k] for k in ("min", "avg", "max", "p50", "p90", "p99")] == [None] * 6
    # 7 measured in bucket 8, [128, 256), narrowed to [150, 250]:
    # P50 = 150 + 100 * 3.5 / 7, P99 = 150 + 100 * 6.93 / 7
    assert [rows["CPUID"][k] for k in ("avg", "min", "p50", "p99", "max")] == \
        [200, 150, 200, 249, 250]
    # 6 of 10 HLTs in bucket 0: the median is in bucket 8, not bucket 0
    assert [rows["HLT"][k] for k in ("avg", "p50", "p90")] == [200, 200, 240]
    inv = rows["INVALID_STATE_EMULATED"]
    # P50 = 900 + (1024 - 900) * 1.5 / 2; P99 = 1024 + (1100 - 1024) * 0.97
    assert (inv["nr"], inv["count"], inv["avg"], inv["p50"], inv["p99"]) == \
        (None, 3, 1000, 993, 1098)
    assert (rows["TOTAL"]["count"], rows["TOTAL"]["avg"]) == (28, 680)
    assert [r for r in rows if r not in ("TOTAL",)][-2:] == [
        "INVALID_STATE_EMULATED", "FAILED_ENTRY"]   # by count, then name
    p = run(viewer, "-f", str(f), "-s", "reason", "-n", "-o", "REASON,NR")
    assert [ln.split()[0] for ln in p.stdout.splitlines()] == [
        "EXTERNAL_INTERRUPT", "CPUID", "HLT", "FAILED_ENTRY",
        "INVALID_STATE_EMULATED", "TOTAL"]
    p = run(viewer, "-f", str(f))
    assert p.returncode == 0, p.stderr
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("INVALID_STATE_EMULATED"))
    assert line.split()[1:3] == ["3", "10.71"]
    assert next(ln for ln in p.stdout.splitlines()
                if ln.startswith("EXTERNAL_INTERRUPT")).split()[1:] == \
        ["4", "14.29", "0ns", "0.00"]   # no MIN..P99
    p = run(viewer, "-f", str(f), "--csv", "-o", "REASON,NR,COUNT", "-s", "name")
    assert "INVALID_STATE_EMULATED,,3\n" in p.stdout


def test_live_delta_with_unmeasured_exits(viewer: Path, tmp_path: Path) -> None:
    f = tmp_path / "live.txt"
    f.write_text(stats_text("10 CPUID 10 1400 150 200 250 0:3,8:7",
                            "12 HLT 2 600 300 300 300 9:2", since=10**9))

    later = stats_text("10 CPUID 20 2400 150 200 250 0:8,8:12",
                       "12 HLT 5 600 300 300 300 0:3,9:2", since=2 * 10**9)
    p = run_live(viewer, f, [(0.2, later)], "-i", "0.6", "-c", "1", "-J",
                 "--raw", "-o", "REASON,COUNT,TOTAL,AVG,P50,P99")
    assert p.returncode == 0, p.stderr
    rows = {r["reason"]: plain(r) for r in json.loads(p.stdout)["exit_stats"]}
    # 10 exits, 5 of them measured, 1000 cycles: 200 each, not 100
    assert rows["CPUID"] == {"reason": "CPUID", "count": 10, "total": 1000,
                             "avg": 200, "p50": 200, "p99": 249}
    # 3 exits, none measured: no time, and no division by zero
    assert rows["HLT"] == {"reason": "HLT", "count": 3, "total": 0,
                           "avg": None, "p50": None, "p99": None}
    assert (rows["TOTAL"]["count"], rows["TOTAL"]["avg"]) == (13, 200)


# ----- a fake /sys/kernel: --pid, --reset, lockdown -----

SHIM = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

/*
 * LD_PRELOAD shim for the kvm-exitstat tests: paths under /sys/kernel go
 * to $KES_FAKE_SYS/kernel, and opening an existing file whose path ends in
 * $KES_FAIL_SUFFIX fails with errno $KES_FAIL_ERRNO, the way lockdown
 * refuses debugfs files (root gets no EPERM from file modes).
 */
static const char *map(const char *path, char *buf)
{
	const char *root = getenv("KES_FAKE_SYS");

	if (!root || strncmp(path, "/sys/kernel", 11) ||
	    (path[11] && path[11] != '/'))
		return path;
	snprintf(buf, PATH_MAX, "%s%s", root, path + 4);
	return buf;
}

static int fail(const char *path)
{
	const char *suffix = getenv("KES_FAIL_SUFFIX");
	const char *err = getenv("KES_FAIL_ERRNO");
	size_t n = strlen(path), m;

	if (!suffix || !err)
		return 0;
	m = strlen(suffix);
	if (n < m || strcmp(path + n - m, suffix) || access(path, F_OK))
		return 0;
	errno = atoi(err);
	return 1;
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

FILE *fopen(const char *path, const char *mode)
{
	char buf[PATH_MAX];

	path = map(path, buf);
	return fail(path) ? NULL : REAL(fopen)(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
	return fopen(path, mode);
}

int open(const char *path, int flags, ...)
{
	char buf[PATH_MAX];
	mode_t mode = 0;
	va_list ap;

	if (flags & (O_CREAT | O_TMPFILE)) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	path = map(path, buf);
	return fail(path) ? -1 : REAL(open)(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;

	if (flags & (O_CREAT | O_TMPFILE)) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	return open(path, flags, mode);
}

DIR *opendir(const char *path)
{
	char buf[PATH_MAX];

	return REAL(opendir)(map(path, buf));
}

int stat(const char *path, struct stat *st)
{
	char buf[PATH_MAX];

	return REAL(stat)(map(path, buf), st);
}

int statfs(const char *path, struct statfs *sfs)
{
	char buf[PATH_MAX];
	const char *p = map(path, buf);
	int ret = REAL(statfs)(p, sfs);

	if (!ret && p != path && !strcmp(path, "/sys/kernel/debug"))
		sfs->f_type = 0x64626720;	/* DEBUGFS_MAGIC */
	return ret;
}
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("shim")
    (d / "shim.c").write_text(SHIM)
    p = subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
                        "-o", str(d / "shim.so"), str(d / "shim.c"), "-ldl"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return d / "shim.so"


class FakeSys:
    """A fake /sys/kernel (debugfs' kvm directory, lockdown) for the viewer."""

    def __init__(self, root: Path, viewer: Path, shim: Path):
        self.root = root
        self.kvm = root / "kernel" / "debug" / "kvm"
        self.kvm.mkdir(parents=True)
        (root / "kernel" / "security").mkdir()
        self.viewer = viewer
        # ASan's runtime must come first: preload it before the shim.
        ldd = subprocess.run(["ldd", str(viewer)], capture_output=True, text=True).stdout
        asan = re.search(r"(\S*libasan\.so\S*) => (\S+)", ldd)
        self.preload = f"{asan.group(2)} {shim}" if asan else str(shim)

    def scope(self, rel: str, text: str, v2: bool = True) -> Path:
        """exit_stats (and exit_stats_reset if @v2) in kvm/@rel."""
        d = self.kvm / rel
        d.mkdir(parents=True, exist_ok=True)
        (d / "exit_stats").write_text(text)
        if v2:
            (d / "exit_stats_reset").write_text("")
        return d

    def lockdown(self, text: str | None) -> None:
        f = self.root / "kernel" / "security" / "lockdown"
        if text is None:
            f.unlink(missing_ok=True)
        else:
            f.write_text(text)

    def run(self, *args: str, fail: tuple[int, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        env = {"KES_FAKE_SYS": str(self.root), "LD_PRELOAD": self.preload}
        if fail:
            env |= {"KES_FAIL_ERRNO": str(fail[0]), "KES_FAIL_SUFFIX": fail[1]}
        return run(self.viewer, *args, env=env)


@pytest.fixture
def fakesys(viewer: Path, shim: Path, tmp_path: Path) -> FakeSys:
    return FakeSys(tmp_path / "sys", viewer, shim)


KVM = "/sys/kernel/debug/kvm"
HOST_TEXT = stats_text("10 CPUID 7 700 100 100 100 7:7")
VM_TEXT = stats_text("10 CPUID 3 300 100 100 100 7:3")
SCOPE_DIRS = ["", "77-10", "77-10/vcpu0", "77-10/vcpu1", "77-11", "78-10"]
SCOPES = {
    "host": ([], [""]),
    "vm": (["--vm", "77-10"], ["77-10"]),
    "vcpu": (["--vm", "77-10", "--vcpu", "1"], ["77-10/vcpu1"]),
    "pid": (["-p", "77"], ["77-10", "77-11"]),
}


def make_tree(fakesys: FakeSys, v2: bool) -> None:
    for rel in SCOPE_DIRS:
        fakesys.scope(rel, HOST_TEXT if not rel else VM_TEXT, v2=v2)


def test_fake_sys_is_used(fakesys: FakeSys) -> None:
    make_tree(fakesys, v2=True)
    p = fakesys.run("--raw", "-n", "-o", "REASON,COUNT")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["CPUID", "7", "TOTAL", "7"]
    p = fakesys.run("-p", "77", "--raw", "-n", "-o", "REASON,COUNT")
    assert p.stdout.split() == ["CPUID", "6", "TOTAL", "6"]


@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_reset_writes_exit_stats_reset(fakesys: FakeSys, scope: str) -> None:
    args, reset = SCOPES[scope]
    make_tree(fakesys, v2=True)
    p = fakesys.run("--reset", *args)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    for rel in SCOPE_DIRS:
        d = fakesys.kvm / rel
        assert (d / "exit_stats_reset").read_text() == ("0\n" if rel in reset else ""), rel
        assert (d / "exit_stats").read_text() == (HOST_TEXT if not rel else VM_TEXT), rel


@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_reset_v1_writes_exit_stats(fakesys: FakeSys, scope: str) -> None:
    """A kernel without exit_stats_reset: writing 0 to exit_stats resets."""
    args, reset = SCOPES[scope]
    make_tree(fakesys, v2=False)
    p = fakesys.run("--reset", *args)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    for rel in SCOPE_DIRS:
        d = fakesys.kvm / rel
        assert d.joinpath("exit_stats").read_text().startswith("0\n") == (rel in reset), rel
        assert not (d / "exit_stats_reset").exists(), "created a file in debugfs"


@pytest.mark.parametrize("v2", [True, False])
@pytest.mark.parametrize("args,path", [
    (["--vm", "9-9"], "9-9"), (["--vm", "77-10", "--vcpu", "5"], "77-10/vcpu5")])
def test_reset_missing_scope(fakesys: FakeSys, v2: bool, args: list[str], path: str) -> None:
    make_tree(fakesys, v2=v2)
    p = fakesys.run("--reset", *args)
    assert p.returncode == 1
    assert p.stderr == f"kvm-exitstat: {KVM}/{path}/exit_stats: No such file or directory\n"
    assert not (fakesys.kvm / path).exists()


LOCKDOWN_CASES = {
    "integrity": ("none [integrity] confidentiality\n",
                  "the kernel is locked down ([integrity] in /sys/kernel/security/lockdown)"),
    "confidentiality": ("none integrity [confidentiality]\n",
                        "the kernel is locked down ([confidentiality] in "),
    "unreadable": (None, "the kernel is probably locked down (cannot read "
                   "/sys/kernel/security/lockdown)"),
}


@pytest.mark.parametrize("case", sorted(LOCKDOWN_CASES))
def test_reset_under_lockdown(fakesys: FakeSys, case: str) -> None:
    text, message = LOCKDOWN_CASES[case]
    make_tree(fakesys, v2=True)
    fakesys.lockdown(text)
    p = fakesys.run("--reset", fail=(1, "exit_stats_reset"))   # EPERM
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith(f"kvm-exitstat: cannot reset {KVM}/exit_stats_reset: "
                               "Operation not permitted: "), p.stderr
    assert message in p.stderr
    assert "lockdown refuses resetting exit_stats, reading still works" in p.stderr
    # no fallback to the v1 reset, nothing written
    assert (fakesys.kvm / "exit_stats").read_text() == HOST_TEXT
    assert (fakesys.kvm / "exit_stats_reset").read_text() == ""
    # exit_stats stays readable
    p = fakesys.run("--raw", "-n", "-o", "COUNT", fail=(1, "exit_stats_reset"))
    assert (p.returncode, p.stdout.split()) == (0, ["7", "7"]), p.stderr


def test_reset_eperm_without_lockdown(fakesys: FakeSys) -> None:
    make_tree(fakesys, v2=True)
    fakesys.lockdown("[none] integrity confidentiality\n")
    p = fakesys.run("--reset", "--vm", "77-10", fail=(1, "exit_stats_reset"))
    assert p.returncode == 1
    assert p.stderr == (f"kvm-exitstat: cannot reset {KVM}/77-10/exit_stats_reset: "
                        "Operation not permitted (the kernel is not locked down: "
                        "/sys/kernel/security/lockdown shows [none])\n")


def test_reset_needs_root(fakesys: FakeSys) -> None:
    make_tree(fakesys, v2=True)
    p = fakesys.run("--reset", "--vm", "77-10", fail=(13, "exit_stats_reset"))  # EACCES
    assert p.returncode == 1
    assert p.stderr == (f"kvm-exitstat: cannot reset {KVM}/77-10/exit_stats_reset: "
                        "Permission denied (resetting is for root only: run as root)\n")


def test_v1_kernel_under_lockdown(fakesys: FakeSys) -> None:
    """v1 files are 0600: lockdown refuses reading and resetting them."""
    make_tree(fakesys, v2=False)
    fakesys.lockdown("none [integrity] confidentiality\n")
    p = fakesys.run("--reset", fail=(1, "/exit_stats"))
    assert p.returncode == 1
    assert p.stderr.startswith(
        f"kvm-exitstat: cannot reset {KVM}/exit_stats: Operation not permitted: "
        "the kernel is locked down ([integrity] in /sys/kernel/security/lockdown); "
        "this kernel has the first version of exit_stats"), p.stderr
    assert (fakesys.kvm / "exit_stats").read_text() == HOST_TEXT
    p = fakesys.run(fail=(1, "/exit_stats"))
    assert p.returncode == 1
    assert p.stderr.startswith(
        f"kvm-exitstat: {KVM}/exit_stats: Operation not permitted: the kernel is "
        "locked down ([integrity] in /sys/kernel/security/lockdown); this may be a "
        "kernel with the first version of exit_stats"), p.stderr
    assert p.stdout == ""


def test_pid_merge_with_unmeasured_exits(fakesys: FakeSys) -> None:
    fakesys.scope("77-10", stats_text("10 CPUID 10 1400 150 200 250 0:3,8:7"))
    fakesys.scope("77-11", stats_text(
        "10 CPUID 5 0 0 0 0 0:5", "12 HLT 2 600 300 300 300 9:2",
        "- INVALID_STATE_EMULATED 3 3000 900 1000 1100 10:2,11:1"))
    p = fakesys.run("-p", "77", "-J", "--raw", "-o", "REASON,NR,COUNT,TOTAL,MIN,AVG,MAX,P50")
    assert p.returncode == 0, p.stderr
    rows = {r.pop("reason"): plain(r) for r in json.loads(p.stdout)["exit_stats"]}
    assert rows == {
        # min from the measured exits of 77-10, not the 0 of 77-11's unmeasured row
        "CPUID": {"nr": 10, "count": 15, "total": 1400, "min": 150, "avg": 200,
                  "max": 250, "p50": 200},
        "INVALID_STATE_EMULATED": {"nr": None, "count": 3, "total": 3000, "min": 900,
                                   "avg": 1000, "max": 1100, "p50": 993},
        "HLT": {"nr": 12, "count": 2, "total": 600, "min": 300, "avg": 300,
                "max": 300, "p50": 300},
        # 20 exits, 12 measured; P50 = 150 + (256 - 150) * 6 / 7
        "TOTAL": {"nr": None, "count": 20, "total": 5000, "min": 150, "avg": 416,
                  "max": 1100, "p50": 241},
    }


# ----- format version 2: the layout of the histogram comes with the file -----

@pytest.mark.parametrize("vendor", sorted(SAMPLES))
def test_samples_are_consistent(vendor: str) -> None:
    """Counts, TOTAL, avg, min and max agree with the histograms."""
    src = parse(SAMPLES[vendor].read_text())
    rows = list(src.rows.values())
    for r in rows + [src.total]:
        measured = r.count - r.hist.get(0, 0)
        assert sum(r.hist.values()) == r.count, r
        assert r.avg == (r.cycles // measured if measured else 0), r
        measured_buckets = sorted(b for b in r.hist if b)
        if measured_buckets:
            lo, hi = bucket_bounds(src.layout, measured_buckets[0])
            assert lo <= r.min < hi, r
            lo, hi = bucket_bounds(src.layout, measured_buckets[-1])
            assert lo <= r.max < hi, r
    t = src.total
    assert t.count == sum(r.count for r in rows)
    assert t.cycles == sum(r.cycles for r in rows)
    assert t.min == min(r.min for r in rows if r.count > r.hist.get(0, 0))
    assert t.max == max(r.max for r in rows)
    assert t.hist == {b: sum(r.hist.get(b, 0) for r in rows)
                      for b in sorted({b for r in rows for b in r.hist})}


def test_v1_and_v2_samples_agree(viewer: Path) -> None:
    """The synthetic v2 files hold the exits of the v1 ones: same counts."""
    for vendor in ("svm", "vmx"):
        out = [run(viewer, "-f", str(SAMPLES[v]), "--raw", "-o",
                   "REASON,NR,COUNT,TOTAL,MIN,AVG,MAX").stdout
               for v in (vendor, f"v2-{vendor}")]
        assert out[0] == out[1]


LAYOUTS = {
    "fewest": (3, 6, 0),        # [1, 64), [64, inf)
    "v1-like": (32, 1, 0),      # the buckets of format version 1
    "most": (243, 20, 4),       # 16 per power of two, 2^20 to 2^35
    "kernel": (107, 6, 2),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_v2_layouts(viewer: Path, tmp_path: Path, name: str) -> None:
    n, m, s = LAYOUTS[name]
    layout = Layout(2, n, m, s)
    # exits at the bottom of the first, the last but one and the last bucket
    buckets = [1, n - 2, n - 2, n - 1]
    cycles = [bucket_bounds(layout, b)[0] for b in buckets]
    hist = ",".join(f"{b}:{buckets.count(b)}" for b in sorted(set(buckets)))
    rows = [f"10 CPUID 4 {sum(cycles)} 1 {sum(cycles) // 4} {cycles[-1]} {hist}",
            "12 HLT 3 0 0 0 0 0:3"]
    text = stats_text(*rows).replace(header(), header2(buckets=n, min_shift=m, sub_shift=s))
    f = tmp_path / "l.txt"
    f.write_text(text)
    src = parse(text)
    p = run(viewer, "-f", str(f), "-J", "--raw", "-o", "REASON,COUNT,P50,P90,P99")
    assert p.returncode == 0, p.stderr
    got = {r["reason"]: r for r in json.loads(p.stdout)["exit_stats"]}
    for r in [*src.rows.values(), src.total]:
        want = [quantile(r, q, src.layout) if r.count > r.hist.get(0, 0) else None
                for q in (0.5, 0.9, 0.99)]
        assert [got[r.name][k] for k in ("p50", "p90", "p99")] == want, r.name
    p = run(viewer, "-f", str(f), "--prometheus")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count('kvm_exit_handling_seconds_bucket{vendor="VMX",reason="CPUID"') == n


def test_v2_alloc_failed_row(viewer: Path, tmp_path: Path) -> None:
    text = stats_text("10 CPUID 2 1100 500 550 600 13:1,14:1",
                      "- ALLOC_FAILED 3 1500 400 500 600 12:1,13:1,14:1")
    f = tmp_path / "a.txt"
    f.write_text(text.replace(header(), header2()))
    p = run(viewer, "-f", str(f), "-J", "--raw", "-o", "REASON,NR,COUNT,P50")
    assert p.returncode == 0, p.stderr
    rows = {r["reason"]: plain(r) for r in json.loads(p.stdout)["exit_stats"]}
    # rank 1.5: half of bucket 13, [448, 512)
    assert rows["ALLOC_FAILED"] == {"reason": "ALLOC_FAILED", "nr": None, "count": 3,
                                    "p50": 480}
    assert rows["TOTAL"]["count"] == 5


def test_live_mode_layout_change_is_a_reset(viewer: Path, tmp_path: Path) -> None:
    """A new kernel between two reads: its counters are all new."""
    f = tmp_path / "live.txt"
    f.write_text(SAMPLES["vmx"].read_text())
    v2 = SAMPLES["v2-vmx"].read_text().replace("since_reset_ns 905738",
                                                "since_reset_ns 999999999")

    p = run_live(viewer, f, [(0.2, v2)], "-i", "0.6", "-c", "1", "--raw",
                 "-o", "REASON,COUNT,P50")
    assert p.returncode == 0, p.stderr
    assert "(counters were reset)" in p.stdout.splitlines()[0]
    rows = {ln.split()[0]: ln.split()[1:] for ln in p.stdout.splitlines()[2:]}
    assert rows["IO_INSTRUCTION"] == ["102", "608"]   # v2's buckets


def test_pid_merge_refuses_different_layouts(fakesys: FakeSys) -> None:
    fakesys.scope("77-10", stats_text("10 CPUID 2 30 10 15 20 4:1,5:1"))
    fakesys.scope("77-11", stats_text("10 CPUID 2 200 100 100 100 7:2")
                  .replace(header(), header2()))
    p = fakesys.run("-p", "77")
    assert p.returncode == 1
    v1, v2 = "version 1 (32 log2 buckets)", \
        "version 2 (107 buckets, hist_min_shift 6, hist_sub_shift 2)"
    # in the order of the directory
    assert p.stderr in (
        f"kvm-exitstat: {KVM}/77-11/exit_stats: histogram layout differs: format "
        f"{v2}, not {v1} ({KVM}/77-10/exit_stats)\n",
        f"kvm-exitstat: {KVM}/77-10/exit_stats: histogram layout differs: format "
        f"{v1}, not {v2} ({KVM}/77-11/exit_stats)\n"), p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("mode", ["split", "l1", "l2", "all"])
def test_guest_mode_golden(viewer: Path, mode: str) -> None:
    """--guest-mode on the nested guest's real file: L2's rows apart, alone,
    left out, or added to L1's rows of the same reason."""
    p = run(viewer, "-f", str(SAMPLES["v3-svm-nested"]), "--raw",
            "--guest-mode", mode, "-o", "REASON,NR,COUNT,TOTAL,MIN,MAX,P50")
    assert p.returncode == 0, p.stderr
    golden = GOLDEN / f"v3-svm-nested-mode-{mode}.out"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(p.stdout)
    assert p.stdout == golden.read_text()


def test_guest_mode_sums() -> None:
    """all = l1 + l2, row by row and in TOTAL; split has both sets."""
    def rows(mode: str) -> dict[str, int]:
        p = run(BINARIES["plain"], "-f", str(SAMPLES["v3-svm-nested"]), "-n",
                "--guest-mode", mode, "-o", "REASON,COUNT")
        return {n: int(c) for n, c in (ln.split() for ln in p.stdout.splitlines())}
    l1, l2, every = rows("l1"), rows("l2"), rows("all")
    assert l2 == {"L2:cpuid": 100, "L2:npf": 7, "L2:hypercall": 1, "TOTAL": 108}
    assert every["TOTAL"] == l1["TOTAL"] + l2["TOTAL"] == 436
    assert every["cpuid"] == 100 and every["npf"] == l1["npf"] + l2["L2:npf"]
    assert every["hypercall"] == 1 and "hypercall" not in l1
    assert set(rows("split")) == set(l1) | set(l2)


def test_guest_mode_rejects_unknown(viewer: Path) -> None:
    p = run(viewer, "-f", str(SAMPLES["v3-svm-nested"]), "--guest-mode", "l3")
    assert p.returncode == 2
    assert "unknown guest mode 'l3' (split, l1, l2 or all)" in p.stderr


# Sub-reasons (exit_stats_detail, series v6): the vCPU of the SVM end-to-end
# run with 20 + 10 RDMSR, 7 + 3 + 1 OUT and 5 hypercalls.
KEYS = DATA / "exit_stats-v3-svm-keys.txt"
DETAIL = DATA / "exit_stats_detail-svm.txt"


@pytest.mark.parametrize("case,args", [
    ("table", []),
    ("raw-json", ["--raw", "-J", "-o", "REASON,COUNT,TOTAL,AVG,MIN"]),
    ("top2-name", ["-t", "2", "-s", "name", "-o", "REASON,COUNT,COUNT%,TIME%"]),
])
def test_detail_golden(viewer: Path, case: str, args: list[str]) -> None:
    """Each reason's sub-reasons as a tree under it, most frequent first;
    only the columns a sub-reason has are filled; --top keeps them."""
    p = run(viewer, "-f", str(KEYS.relative_to(ROOT)), "--detail-file",
            str(DETAIL.relative_to(ROOT)), *args, env={"LC_ALL": "C"}, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    golden = GOLDEN / f"v3-svm-keys-detail-{case}.out"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(p.stdout)
    assert p.stdout == golden.read_text()


def test_detail_json_children_sum_to_their_row(viewer: Path) -> None:
    p = run(viewer, "-f", str(KEYS), "--detail-file", str(DETAIL), "-J", "--raw",
            "-o", "REASON,COUNT,TOTAL")
    rows = json.loads(p.stdout)["exit_stats"]
    kids = {r["reason"]: {c["reason"]: c["count"] for c in r.get("children", [])}
            for r in rows}
    assert kids["msr"] == {"rdmsr:0x1a0": 20, "rdmsr:0x1b": 10}
    assert kids["io"] == {"out:0x99:1": 7, "out:0x9a:2": 3, "out:0xf1:1": 1}
    assert kids["hypercall"] == {"nr:1": 5}
    for r in rows:
        if r.get("children"):
            assert sum(c["count"] for c in r["children"]) == r["count"]
            assert sum(c["total"] for c in r["children"]) == r["total"]


def detail_text(*rows: str, version: str = "1", vendor: str = "SVM") -> str:
    return (f"# kvm_exit_stats_detail {version}\n# vendor {vendor}\n# clock tsc\n"
            "# tsc_khz 1000007\n# since_reset_ns 5\n# max_keys 128\n"
            "# reason name key count cycles avg\n" + "".join(r + "\n" for r in rows))


def test_detail_guest_modes(viewer: Path, tmp_path: Path) -> None:
    """--guest-mode applies to the sub-reasons as to the rows: all adds an
    L2 row's sub-reasons to its L1 row's."""
    d = tmp_path / "d"
    d.write_text(detail_text("124 msr rdmsr:0x10 5 500 100", "124 msr other 1 100 100",
                             "124 L2:msr rdmsr:0x10 2 400 200",
                             "124 L2:msr wrmsr:0x11 1 50 50"))
    f = tmp_path / "f"
    f.write_text(header3().replace("VMX", "SVM").replace("khz 1000\n", "khz 1000007\n") +
                 "124 msr 6 600 100 100 100 0 8:6\n"
                 "124 L2:msr 3 450 50 150 200 0 6:3\n"
                 "- TOTAL 9 1050 50 116 200 0 6:3,8:6\n")

    def tree(mode: str) -> list[list[str]]:
        p = run(viewer, "-f", str(f), "--detail-file", str(d), "--guest-mode", mode,
                "-n", "--raw", "-o", "REASON,COUNT,TOTAL", env={"LC_ALL": "C"})
        assert p.returncode == 0, p.stderr
        return [ln.split() for ln in p.stdout.splitlines()]
    assert tree("all") == [["msr", "9", "1050"], ["|-rdmsr:0x10", "7", "900"],
                           ["|-wrmsr:0x11", "1", "50"], ["`-other", "1", "100"],
                           ["TOTAL", "9", "1050"]]
    assert tree("l2") == [["L2:msr", "3", "450"], ["|-rdmsr:0x10", "2", "400"],
                          ["`-wrmsr:0x11", "1", "50"], ["TOTAL", "3", "450"]]
    assert [r[0] for r in tree("l1")] == ["msr", "|-rdmsr:0x10", "`-other", "TOTAL"]


@pytest.mark.parametrize("case,rows,message", [
    ("version", ["-"], "detail format version '2'"),
    ("vendor", ["vendor"], "vendor or tsc_khz differs"),
    ("fields", ["124 msr rdmsr:0x10 5 500"], "expected 6 fields"),
    ("avg", ["124 msr rdmsr:0x10 5 500 99"], "avg is not cycles / count"),
    ("zero", ["124 msr rdmsr:0x10 0 0 0"], "a sub-reason without exits"),
    ("dup", ["124 msr rdmsr:0x10 5 500 100", "124 msr rdmsr:0x10 1 1 1"],
     "duplicate sub-reason rdmsr:0x10 of msr"),
    ("other", ["124 msr other 1 1 1", "124 msr rdmsr:0x10 1 1 1"],
     "'other' is not the last sub-reason of msr"),
    ("apart", ["124 msr rdmsr:0x10 1 1 1", "123 io out:0x80:1 1 1 1",
               "124 msr rdmsr:0x11 1 1 1"], "the sub-reasons of msr are not together"),
    ("number", ["124 msr rdmsr:0x10 18446744073709551616 1 1"], "bad number"),
    ("reason", ["x msr rdmsr:0x10 1 1 1"], "bad exit reason 'x'"),
])
def test_detail_malformed(viewer: Path, tmp_path: Path, case: str, rows: list[str],
                          message: str) -> None:
    d = tmp_path / "d"
    if rows == ["-"]:
        d.write_text(detail_text(version="2"))
    elif rows == ["vendor"]:
        d.write_text(detail_text(vendor="VMX"))
    else:
        d.write_text(detail_text(*rows))
    p = run(viewer, "-f", str(KEYS), "--detail-file", str(d))
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert message in p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("args,message", [
    (["--detail", "--csv"], "--detail works with the table and --json only"),
    (["--detail", "--prometheus"], "--detail works with the table and --json only"),
    (["--detail", "-i", "1"], "--detail works with the table and --json only"),
    (["--detail", "-f", "x"], "with --file, give the sub-reasons with --detail-file"),
    (["--detail-file", "x"], "--detail-file needs --file"),
    (["-f", "-", "--detail-file", "-"], "cannot both read stdin"),
])
def test_detail_usage_errors(viewer: Path, args: list[str], message: str) -> None:
    p = run(viewer, *args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert message in p.stderr


# --hist: each reason's distribution as a bar chart (bpftrace's hist() style).
HIST_CASES = {
    "v2-vmx-demo-default": ("v2-vmx-demo", []),
    "v2-vmx-demo-cycles-two": ("v2-vmx-demo", ["-u", "cycles", "HLT", "30"]),
    "vmx-us-top2": ("vmx", ["-u", "us", "-t", "2"]),
    "v3-svm-nested-l2": ("v3-svm-nested", ["--guest-mode", "l2"]),
    "v2-vmx-demo-json": ("v2-vmx-demo", ["-J", "CPUID", "hlt"]),
}


@pytest.mark.parametrize("case", sorted(HIST_CASES))
def test_hist_golden(viewer: Path, case: str) -> None:
    sample, args = HIST_CASES[case]
    # Relative: -J names the file, and the golden must not depend on where
    # the repository is.
    p = run(viewer, "--hist", "-f", str(SAMPLES[sample].relative_to(ROOT)), *args,
            cwd=ROOT)
    assert p.returncode == 0, p.stderr
    golden = GOLDEN / f"hist-{case}.out"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(p.stdout)
    assert p.stdout == golden.read_text()


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_hist_charts_every_bucket(viewer: Path, sample: str) -> None:
    """One line per non-empty bucket, counts that add up to the row's, the
    largest bucket a full bar and the others in proportion, bounds that
    are the layout's."""
    st = parse(SAMPLES[sample].read_text())
    p = run(viewer, "--hist", "-u", "cycles", "-f", str(SAMPLES[sample]))
    assert p.returncode == 0, p.stderr
    charts = p.stdout.split("\n\n")
    assert len(charts) == sum(1 for r in st.rows.values() if r.count)
    for chart in charts:
        title, *lines = chart.strip("\n").split("\n")
        m = re.fullmatch(r"(\S+)(?: \((\d+)\))?, (\d+) exits?, in cycles:", title)
        assert m, title
        row = st.rows[m.group(1)]
        assert int(m.group(3)) == row.count
        want: list[tuple[tuple[int, float] | None, int]] = [
            (bucket_bounds(st.layout, b), n) for b, n in sorted(row.hist.items())
            if n and b]
        if row.hist.get(0):
            want.append((None, row.hist[0]))
        assert len(lines) == len(want), chart
        top = max(n for _, n in want)
        for line, (bounds, n) in zip(lines, want):
            lm = re.fullmatch(r"(\[(\d+), (\d+|inf)\)|untimed) +(\d+) \|(@*) *\|",
                              line)
            assert lm, line
            if bounds is None:
                assert lm.group(1) == "untimed"
            else:
                lo, hi = bounds
                assert int(lm.group(2)) == lo
                assert lm.group(3) == ("inf" if hi == math.inf else str(hi))
            assert int(lm.group(4)) == n
            assert len(lm.group(5)) == n * 40 // top
            assert len(line.split("|")[1]) == 40


def test_hist_json_buckets_add_up(viewer: Path) -> None:
    st = parse(SAMPLES["v3-svm-nested"].read_text())
    khz = int(st.header["tsc_khz"])
    p = run(viewer, "--hist", "-J", "-f", str(SAMPLES["v3-svm-nested"]))
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert len(doc["histograms"]) == sum(1 for r in st.rows.values() if r.count)
    for h in doc["histograms"]:
        row = st.rows[h["name"]]
        assert h["reason"] == row.reason
        assert h["count"] == row.count
        assert h["untimed"] + sum(b["count"] for b in h["buckets"]) == row.count
        for b in h["buckets"]:
            assert b["upper_cycles"] is None or b["lower_cycles"] < b["upper_cycles"]
            assert abs(b["lower_ns"] - b["lower_cycles"] * 1e6 / khz) < 1e-3


@pytest.mark.parametrize("args,status,message", [
    (["--hist", "--csv"], 2, "--hist works with the table and --json only"),
    (["--hist", "--prometheus"], 2, "--hist works with the table and --json only"),
    (["--hist", "-o", "COUNT"], 2, "--hist works with the table and --json only"),
    (["--hist", "-i", "1"], 2, "--hist works with the table and --json only"),
    (["CPUID"], 2, "unexpected argument 'CPUID'"),
    (["--hist", "CPUID", "NO_SUCH"], 1, "no exits of 'NO_SUCH' shown"),
    (["--hist", "-t", "1", "HLT"], 1, "no exits of 'HLT' shown"),
])
def test_hist_errors(viewer: Path, args: list[str], status: int, message: str) -> None:
    p = run(viewer, "-f", str(SAMPLES["v2-vmx-demo"]), *args)
    assert p.returncode == status, p.stderr
    assert message in p.stderr


# --per vm|vcpu on a debugfs tree under --sysroot: two VMs of the test's own
# process (so that /proc/PID/comm is real) and one of a process that is gone.
@pytest.fixture
def sysroot(tmp_path: Path) -> Path:
    kvm = tmp_path / "sys/kernel/debug/kvm"
    me, gone = os.getpid(), 2 ** 22 + 7        # above pid_max's default
    files = {
        "exit_stats": "v2-vmx-demo",
        f"{me}-11/exit_stats": "v2-vmx-demo-later",
        f"{me}-11/vcpu0/exit_stats": "v2-vmx-demo",
        f"{me}-11/vcpu1/exit_stats": "v2-vmx-demo-reset",
        f"{me}-9/exit_stats": "v2-vmx-demo-reset",
        f"{gone}-3/exit_stats": "v2-vmx-demo-reset",
        f"{gone}-3/vcpu0/exit_stats": "v2-vmx-demo-reset",
    }
    for f, sample in files.items():
        (kvm / f).parent.mkdir(parents=True, exist_ok=True)
        (kvm / f).write_text((DATA / f"exit_stats-{sample}.txt").read_text())
    (kvm / "not-a-vm").mkdir()
    (tmp_path / "proc" / str(me)).mkdir(parents=True)
    (tmp_path / "proc" / str(me) / "comm").write_text("qemu-guest1\n")
    return tmp_path


def per_rows(viewer: Path, root: Path, *args: str) -> list[dict]:
    p = run(viewer, "--sysroot", str(root), "-J", "--raw", *args)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    return doc["vms"] if "vms" in doc else doc["vcpus"]


def test_per_vm_rows_are_their_files(viewer: Path, sysroot: Path) -> None:
    me = os.getpid()
    rows = per_rows(viewer, sysroot, "--per", "vm")
    # Most exits first; the host's own file and not-a-vm are no VM.
    assert [r["vm"] for r in rows] == [f"{me}-11", f"{me}-9", f"{2 ** 22 + 7}-3"]
    assert [r["comm"] for r in rows] == ["qemu-guest1", "qemu-guest1", "?"]
    total = 0
    for r in rows:
        f = sysroot / "sys/kernel/debug/kvm" / r["vm"] / "exit_stats"
        st = parse(f.read_text())
        top = max(st.rows.values(), key=lambda x: x.count)
        assert (r["exits"], r["total"], r["avg"]) == \
            (st.total.count, st.total.cycles, st.total.avg)
        assert (r["top"], r["pid"]) == (top.name, int(r["vm"].split("-")[0]))
        assert r["top%"] == pytest.approx(100 * top.count / st.total.count, abs=0.005)
        total += st.total.cycles
    for r in rows:
        assert r["time%"] == pytest.approx(100 * r["total"] / total, abs=0.005)


def test_per_vcpu_sorts_filters_and_tops(viewer: Path, sysroot: Path) -> None:
    me = os.getpid()
    rows = per_rows(viewer, sysroot, "--per", "vcpu", "-s", "name")
    assert [(r["vm"], r["vcpu"]) for r in rows] == \
        [(f"{me}-11", 0), (f"{me}-11", 1), (f"{2 ** 22 + 7}-3", 0)]
    rows = per_rows(viewer, sysroot, "--per", "vcpu", "--vm", f"{me}-11", "-s", "-count")
    assert [r["vcpu"] for r in rows] == [1, 0]
    assert rows[0]["exits"] == 220 and rows[1]["exits"] == 11303
    rows = per_rows(viewer, sysroot, "--per", "vm", "-p", str(me), "-t", "1", "-s", "avg")
    assert [r["vm"] for r in rows] == [f"{me}-11"]
    p = run(viewer, "--sysroot", str(sysroot), "--per", "vm", "--csv", "-u", "cycles")
    lines = list(csv.reader(io.StringIO(p.stdout)))
    assert lines[0] == ["VM", "PID", "COMM", "EXITS", "TOTAL", "TIME%", "AVG", "TOP", "TOP%"]
    later = parse((DATA / "exit_stats-v2-vmx-demo-later.txt").read_text())
    assert lines[1][:5] == [f"{me}-11", str(me), "qemu-guest1",
                            str(later.total.count), str(later.total.cycles)]
    table = run(viewer, "--sysroot", str(sysroot), "--per", "vm").stdout.splitlines()
    assert table[0].split() == ["VM", "PID", "COMM", "EXITS", "TOTAL", "TIME%", "AVG",
                                "TOP", "TOP%"]
    assert len(table) == 4


def test_per_vm_prometheus_has_vm_labels(viewer: Path, sysroot: Path) -> None:
    me = os.getpid()
    p = run(viewer, "--sysroot", str(sysroot), "--per", "vm", "--prometheus")
    assert p.returncode == 0, p.stderr
    check = subprocess.run(["promtool", "check", "metrics"], input=p.stdout,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (f'kvm_exits_total{{vendor="VMX",reason="CPUID",nr="10",vm="{me}-11",'
            f'comm="qemu-guest1"}} 10500') in p.stdout.splitlines()
    assert p.stdout.count("# TYPE kvm_exits_total counter") == 1
    vms = set(re.findall(r'vm="([^"]+)"', p.stdout))
    assert vms == {f"{me}-11", f"{me}-9", f"{2 ** 22 + 7}-3"}


def test_per_live_survives_vms_coming_and_going(viewer: Path, sysroot: Path) -> None:
    """Between two reads a VM is destroyed, one is created, one is reset and
    one vCPU file goes (the kernel refuses a dying VM's files with ENOENT):
    the new and the reset VM count from their start, at their own rate."""
    me, gone = os.getpid(), 2 ** 22 + 7
    kvm = sysroot / "sys/kernel/debug/kvm"
    reset = DATA / "exit_stats-v2-vmx-demo-reset.txt"
    p = subprocess.Popen([str(viewer), "--sysroot", str(sysroot), "--per", "vm",
                          "-i", "0.5", "-c", "3", "-J", "--raw"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1:exitcode=99"))
    assert p.stdout is not None
    first = []
    for line in p.stdout:             # the first interval's document, whole
        first.append(line)
        if line == "}\n":
            break

    def put(f: Path, text: str) -> None:
        tmp = f.with_name(".new")
        tmp.write_text(text)
        os.replace(tmp, f)

    shutil.rmtree(kvm / f"{gone}-3")
    (kvm / f"{me}-12").mkdir()
    put(kvm / f"{me}-12/exit_stats", reset.read_text())
    put(kvm / f"{me}-11/exit_stats", reset.read_text())
    (kvm / f"{me}-9/exit_stats").unlink()         # dying: its directory stays
    rest, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    docs = [json.loads("".join(first))] + \
        [json.loads(d) for d in re.split(r"(?<=\})\n(?=\{)", rest.strip())]
    assert len(docs) == 3
    assert {r["vm"] for r in docs[0]["vms"]} == {f"{me}-11", f"{me}-9", f"{gone}-3"}
    assert all(r["exits"] == 0 for r in docs[0]["vms"])
    second = {r["vm"]: r for r in docs[1]["vms"]}
    assert set(second) == {f"{me}-11", f"{me}-12"}
    since = parse(reset.read_text()).header["since_reset_ns"]
    for vm in (f"{me}-11", f"{me}-12"):
        assert second[vm]["exits"] == 220
        assert second[vm]["rate"] == pytest.approx(220 / (int(since) / 1e9), rel=1e-3)
    assert all(r["exits"] == 0 for r in docs[2]["vms"])


@pytest.mark.parametrize("args,message", [
    (["--per", "host"], "unknown --per 'host' (vm or vcpu)"),
    (["--per", "vm", "-f", "x"], "--per reads the VMs of debugfs"),
    (["--per", "vm", "--hist"], "--per reads the VMs of debugfs"),
    (["--per", "vm", "-o", "VM"], "--per reads the VMs of debugfs"),
    (["--per", "vcpu", "--prometheus"], "--prometheus has per-VM series at most"),
    (["--per", "vm", "--vm", "1-2", "--vcpu", "0"], "use it with --per vcpu"),
    (["--per", "vm", "-s", "p99"], "with --per, sort by count, total, avg or name"),
    (["--sysroot", ""], "--sysroot needs a directory"),
])
def test_per_usage_errors(viewer: Path, args: list[str], message: str) -> None:
    p = run(viewer, *args)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr


def test_per_skip_zero_and_odd_names(viewer: Path, sysroot: Path) -> None:
    """-z drops VMs without exits; a process name that is not UTF-8 or has
    control bytes stays valid JSON and Prometheus."""
    me = os.getpid()
    kvm = sysroot / "sys/kernel/debug/kvm"
    head = (DATA / "exit_stats-v2-vmx-demo.txt").read_text().split("\n0 ")[0]
    (kvm / f"{me}-9/exit_stats").write_text(head + "\n- TOTAL 0 0 0 0 0\n")
    assert f"{me}-9" not in [r["vm"] for r in per_rows(viewer, sysroot, "--per", "vm", "-z")]
    assert f"{me}-9" in [r["vm"] for r in per_rows(viewer, sysroot, "--per", "vm")]
    (sysroot / "proc" / str(me) / "comm").write_bytes(b'q"e\\mu\x01g\xc3\n')
    rows = per_rows(viewer, sysroot, "--per", "vm", "-p", str(me))
    assert {r["comm"] for r in rows} == {'q"e\\mu?g?'}
    p = run(viewer, "--sysroot", str(sysroot), "--per", "vm", "--prometheus")
    assert 'comm="q\\"e\\\\mu?g?"' in p.stdout
    check = subprocess.run(["promtool", "check", "metrics"], input=p.stdout,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_per_explains_a_missing_vm(viewer: Path, sysroot: Path) -> None:
    p = run(viewer, "--sysroot", str(sysroot), "--per", "vcpu", "--vm", "1-1")
    assert p.returncode == 1
    assert "no VM 1-1" in p.stderr
    p = run(viewer, "--sysroot", str(sysroot), "--per", "vcpu", "--vm",
            f"{os.getpid()}-11", "--vcpu", "7")
    assert p.returncode == 1
    assert f"no vCPU 7 of VM {os.getpid()}-11" in p.stderr
    p = run(viewer, "--sysroot", str(sysroot / "nothing"), "--per", "vm")
    assert p.returncode == 1
    assert "KVM is not loaded" in p.stderr


def test_csv_meta_says_what_the_rows_are(viewer: Path) -> None:
    f = SAMPLES["v3-svm-nested"]
    st = parse(f.read_text())
    p = run(viewer, "-f", str(f), "--csv", "--csv-meta", "-u", "us")
    assert p.returncode == 0, p.stderr
    meta = [ln for ln in p.stdout.splitlines() if ln.startswith("#")]
    assert meta == ["# format_version 3", "# vendor SVM",
                    f"# tsc_khz {st.header['tsc_khz']}",
                    f"# since_reset_ns {st.header['since_reset_ns']}",
                    f"# scope file {f}", "# unit us"]
    rows = list(csv.reader(io.StringIO(p.stdout), strict=True))
    body = [r for r in rows if not r[0].startswith("#")]
    assert body[0][0] == "REASON" and body[-1][0] == "TOTAL"
    plain = run(viewer, "-f", str(f), "--csv", "-u", "us").stdout
    assert "\n".join(ln for ln in p.stdout.splitlines() if not ln.startswith("#")) \
        == plain.rstrip("\n")
    p = run(viewer, "-f", str(f), "--csv-meta")
    assert p.returncode == 2 and "--csv-meta goes with --csv" in p.stderr


def test_json_is_self_describing(viewer: Path) -> None:
    """-J: the file's header and the scope first, then the rows, each time
    field also in cycles and in ns, whatever -u says."""
    f = SAMPLES["v3-svm-nested"]
    st = parse(f.read_text())
    khz = int(st.header["tsc_khz"])
    p = run(viewer, "-f", str(f), "-J", "-u", "us", "-o", "REASON,COUNT,TOTAL,MAX,P99")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert list(doc)[:7] == ["format_version", "vendor", "tsc_khz", "since_reset_ns",
                             "scope", "guest_mode", "unit"]
    assert (doc["format_version"], doc["vendor"], doc["tsc_khz"], doc["since_reset_ns"]) == \
        (3, "SVM", khz, int(st.header["since_reset_ns"]))
    assert doc["scope"] == {"kind": "file", "file": str(f)}
    assert (doc["guest_mode"], doc["unit"]) == ("split", "us")
    rows = {r["reason"]: r for r in doc["exit_stats"]}
    for name, row in st.rows.items():
        r = rows[name]
        assert r["total_cycles"] == row.cycles and r["max_cycles"] == row.max
        assert r["total_ns"] == round(row.cycles * 1e6 / khz)
        assert r["total"] == pytest.approx(row.cycles * 1e3 / khz, abs=0.0005)
        assert r["p99_ns"] == pytest.approx(r["p99_cycles"] * 1e6 / khz, abs=0.5)
    assert rows["TOTAL"]["total_cycles"] == st.total.cycles
