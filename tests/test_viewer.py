"""kvm-exitstat on saved exit_stats files: golden output, formats, errors.

Each test runs against the normal build and the ASan+UBSan build.  Set
UPDATE_GOLDEN=1 to rewrite tests/data/golden/ after a deliberate change.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BUILD, ROOT
from exitstats import parse

DATA = ROOT / "tests" / "data"
GOLDEN = DATA / "golden"
SAMPLES = {"svm": DATA / "exit_stats-svm.txt", "vmx": DATA / "exit_stats-vmx.txt"}
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


def run(viewer: Path, *args: str, stdin: bytes | None = None,
        ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TZ="UTC",
               ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=99",
               UBSAN_OPTIONS="halt_on_error=1:exitcode=99")
    p = subprocess.run([str(viewer), *args], capture_output=True, env=env,
                       input=stdin, timeout=60)
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


@pytest.mark.parametrize("vendor", sorted(SAMPLES))
def test_prometheus(viewer: Path, vendor: str) -> None:
    src = parse(SAMPLES[vendor].read_text())
    hz = int(src.header["tsc_khz"]) * 1000
    p = run(viewer, "-f", str(SAMPLES[vendor]), "--prometheus")
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
        assert v == vendor.upper()
        row = src.rows[reason]
        assert nr == str(row.reason)
        seen.add((metric, reason))
        if metric == "kvm_exits_total":
            assert int(value) == row.count
        elif metric == "kvm_exit_handling_seconds_bucket":
            buckets.setdefault(reason, []).append(
                (float("inf") if le == "+Inf" else float(le), int(value)))
        elif metric == "kvm_exit_handling_seconds_sum":
            assert float(value) == pytest.approx(row.cycles / hz, rel=1e-6)
        elif metric == "kvm_exit_handling_seconds_count":
            assert int(value) == row.count
    for reason, row in src.rows.items():
        b = buckets[reason]
        assert [c for _, c in b] == sorted(c for _, c in b), "cumulative"
        assert b[-1] == (float("inf"), row.count)
        for le, cum in b[:-1]:
            # exits below le seconds, from the log2 histogram
            want = sum(n for k, n in row.hist.items() if 2 ** k <= le * hz * (1 + 1e-5))
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
    attr = {"total": "cycles", "p99": "max"}.get(k, k)

    def order(r):  # largest first for numbers, smallest first for name/reason
        if k == "name":
            return (r.name,)
        if k == "reason":
            return (r.reason, r.name)
        return (-getattr(r, attr), r.name)
    want = [r.name for r in sorted(src.rows.values(), key=order)]
    if k == "p99":  # p99 is a histogram bound, not max: check the set only
        assert sorted(names) == sorted(want)
        return
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


def header(version: str = "1") -> str:
    return (f"# kvm_exit_stats {version}\n# vendor VMX\n# clock tsc\n"
            "# tsc_khz 1000\n# since_reset_ns 5\n"
            "# reason name count cycles min avg max hist\n")


ROW = "10 CPUID 2 30 10 15 20 4:1,5:1\n"
TOTAL = "- TOTAL 2 30 10 15 20 4:1,5:1\n"

MALFORMED = {
    "empty": (b"", "empty input"),
    "truncated-line": ((header() + ROW + TOTAL)[:-1].encode(), "truncated line"),
    "truncated-file": ((header() + ROW).encode(), "missing '- TOTAL' line"),
    "cut-in-header": (header()[:40].encode(), "line 3:"),
    "wrong-version": ((header("2") + TOTAL).encode(), "format version 2, this kvm-exitstat reads version 1"),
    "not-exit-stats": (b"hello world\n", "not a kvm exit_stats file"),
    "u64-overflow": ((header() + "10 CPUID 18446744073709551616 30 10 15 20 4:1,5:1\n" + TOTAL).encode(),
                     "not a 64-bit unsigned integer"),
    "missing-columns": ((header() + "10 CPUID 2 30 10\n" + TOTAL).encode(), "expected 8 fields"),
    "extra-columns": ((header() + "10 CPUID 2 30 10 15 20 4:1,5:1 x\n" + TOTAL).encode(), "expected 8 fields"),
    "hist-mismatch": ((header() + "10 CPUID 2 30 10 15 20 4:1\n" + TOTAL).encode(), "do not add up"),
    "min-gt-max": ((header() + "10 CPUID 2 30 30 15 20 4:1,5:1\n" + TOTAL).encode(), "min <= avg <= max"),
    "bucket-range": ((header() + "10 CPUID 2 30 10 15 20 4:1,32:1\n" + TOTAL).encode(), "out of order or range"),
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

    def writer() -> None:
        time.sleep(0.3)
        f.write_text(with_cpuid(2500, 2_000_000_000))
        time.sleep(0.6)
        f.write_text(with_cpuid(100, 500_000_000))  # counters were reset

    t = threading.Thread(target=writer)
    t.start()
    p = run(viewer, "-f", str(f), "-i", "0.6", "-c", "2", "--raw",
            "-o", "REASON,COUNT,RATE")
    t.join()
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
