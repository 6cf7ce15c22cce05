"""The fleet path end to end: kvm-exitstat-textfile writes
`kvm-exitstat --prometheus` into a directory, Debian's node_exporter serves
it with its textfile collector, and a Prometheus server scrapes that every
second; the checks are PromQL queries through Prometheus' HTTP API.

The captures are tests/data/exit_stats-v2-vmx-demo.txt (real, from
`make demo VENDOR=vmx`) and two derived from it: `-later`, the same
counters with 500 CPUID, 50 HLT and 30 IO exits more, and `-reset`, what
the counters hold after a reset and 200 CPUID and 20 HLT exits.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT
from exitstats import ExitStats, bucket_bounds, parse

DATA = ROOT / "tests" / "data"
CAPTURES = [DATA / f"exit_stats-v2-vmx-demo{s}.txt" for s in ("", "-later", "-reset")]
VIEWER = ROOT / "userspace" / "kvm-exitstat"
TEXTFILE = ROOT / "userspace" / "kvm-exitstat-textfile"
SCRAPE = 1.0        # seconds
WINDOW = 30         # seconds: the range of the rate() checks, every sample


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Fleet:
    """node_exporter and Prometheus on 127.0.0.1, in a throwaway directory."""

    def __init__(self, tmp: Path):
        self.textfiles = tmp / "textfile"
        self.textfiles.mkdir()
        self.port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = tmp

    def start(self) -> None:
        ne_port = free_port()
        self.spawn("node_exporter", [
            "prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{ne_port}",
            "--collector.disable-defaults", "--collector.textfile",
            f"--collector.textfile.directory={self.textfiles}"])
        cfg = self.logs / "prometheus.yml"
        cfg.write_text(
            f"global:\n  scrape_interval: {SCRAPE:g}s\n  scrape_timeout: {SCRAPE:g}s\n"
            "scrape_configs:\n  - job_name: kvm\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{ne_port}']\n")
        self.spawn("prometheus", [
            "prometheus", f"--config.file={cfg}",
            f"--storage.tsdb.path={self.logs / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h"])

    def spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "wb")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def write(self, capture: Path) -> None:
        """What the shipped systemd service runs, on a saved capture."""
        subprocess.run([str(TEXTFILE), str(self.textfiles), "-f", str(capture)],
                       check=True, env=dict(os.environ, KVM_EXITSTAT=str(VIEWER)))

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        args = {"query": expr}
        if at is not None:
            args["time"] = f"{at:.3f}"
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode(args))
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.load(r)
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def by_reason(self, expr: str, at: float | None = None) -> dict[str, float]:
        return {r["metric"]["reason"]: float(r["value"][1])
                for r in self.query(expr, at)}

    def wait_for(self, st: ExitStats, timeout: float = 60) -> None:
        """Until Prometheus has scraped @st's counts, and one scrape more."""
        want = {n: float(r.count) for n, r in st.rows.items()}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.by_reason("kvm_exits_total") == want:
                    time.sleep(2 * SCRAPE)
                    return
            except OSError:
                pass        # not listening yet
            time.sleep(0.5)
        logs = {f.name: f.read_text(errors="replace")[-2000:]
                for f in self.logs.glob("*.log")}
        raise AssertionError(f"Prometheus never had {want}: {logs}")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("fleet"))
    f.write(CAPTURES[0])
    f.start()
    try:
        yield f
    finally:
        f.stop()


def prom_rate(points: list[tuple[int, float]], start: int, end: int) -> float:
    """Prometheus 2's extrapolatedRate() for a counter: the increase over
    @points (milliseconds, value; the samples in [start, end]), resets
    counted, extrapolated to the window's ends, per second."""
    (t0, v0), (tn, vn) = points[0], points[-1]
    result = vn - v0
    for (_, prev), (_, cur) in zip(points, points[1:]):
        if cur < prev:
            result += prev
    to_start, to_end = (t0 - start) / 1000, (end - tn) / 1000
    sampled = (tn - t0) / 1000
    avg = sampled / (len(points) - 1)
    if result > 0 and v0 >= 0:
        to_start = min(to_start, sampled * (v0 / result))
    interval = sampled
    interval += to_start if to_start < avg * 1.1 else avg / 2
    interval += to_end if to_end < avg * 1.1 else avg / 2
    return result * (interval / sampled) / ((end - start) / 1000)


def check_rate(fleet: Fleet, reason: str) -> tuple[float, int]:
    """rate() and resets() of one reason now, and the rate its samples give."""
    # Milliseconds, as Prometheus has them, and two scrapes back: a sample
    # stored between the two queries is then in neither window.
    end = int((time.time() - 2 * SCRAPE) * 1000)
    at = end / 1000
    sel = f'kvm_exits_total{{reason="{reason}"}}[{WINDOW}s]'
    raw = fleet.query(sel, at)
    assert len(raw) == 1, raw
    points = [(round(float(t) * 1000), float(v)) for t, v in raw[0]["values"]]
    rate = fleet.by_reason(f"rate({sel})", at)[reason]
    want = prom_rate(points, end - WINDOW * 1000, end)
    assert rate == pytest.approx(want, rel=1e-9), (points, rate, want)
    resets = int(fleet.by_reason(f"resets({sel})", at)[reason])
    return rate, resets


def test_counts_per_reason(fleet: Fleet) -> None:
    st = parse(CAPTURES[0].read_text())
    fleet.wait_for(st)
    got = fleet.by_reason("sum by (reason) (kvm_exits_total)")
    assert got == {n: float(r.count) for n, r in st.rows.items()}
    vendors = {r["metric"]["vendor"] for r in fleet.query("kvm_exits_total")}
    assert vendors == {"VMX"}


def test_p99_is_in_its_bucket(fleet: Fleet) -> None:
    st = parse(CAPTURES[0].read_text())
    fleet.wait_for(st)
    hz = int(st.header["tsc_khz"]) * 1e3
    got = fleet.by_reason(
        "histogram_quantile(0.99, sum by (le, reason) (kvm_exit_handling_seconds_bucket))")
    assert set(got) == set(st.rows)
    for name, row in st.rows.items():
        measured = row.count - row.hist.get(0, 0)
        cum = 0
        for b in sorted(k for k in row.hist if k):
            cum += row.hist[b]
            if cum >= 0.99 * measured:
                break
        lo, hi = bucket_bounds(st.layout, b)
        assert lo / hz * (1 - 1e-6) <= got[name] <= hi / hz * (1 + 1e-6), (name, b)


def test_rate_after_a_later_capture(fleet: Fleet) -> None:
    before, after = (parse(c.read_text()) for c in CAPTURES[:2])
    fleet.write(CAPTURES[0])
    fleet.wait_for(before)
    fleet.write(CAPTURES[1])
    fleet.wait_for(after)
    for reason, added in (("CPUID", 500), ("HLT", 50), ("IO_INSTRUCTION", 30),
                          ("MSR_READ", 0)):
        assert after.rows[reason].count - before.rows[reason].count == added
        rate, resets = check_rate(fleet, reason)
        assert resets == 0
        assert (rate > 0) == (added > 0), (reason, rate)
    got = fleet.by_reason(f"increase(kvm_exits_total[{WINDOW}s])")
    assert got["CPUID"] >= 500 and got["MSR_READ"] == 0


def test_reset_is_a_counter_reset(fleet: Fleet) -> None:
    later, reset = (parse(c.read_text()) for c in CAPTURES[1:])
    fleet.write(CAPTURES[1])
    fleet.wait_for(later)
    fleet.write(CAPTURES[2])
    fleet.wait_for(reset)
    for reason in ("CPUID", "HLT"):
        assert reset.rows[reason].count < later.rows[reason].count
        rate, resets = check_rate(fleet, reason)
        assert resets == 1
        assert rate > 0, reason
    # The reasons without exits since the reset are gone from the file:
    # Prometheus marks their series stale.
    assert set(fleet.by_reason("kvm_exits_total")) == {"CPUID", "HLT"}


def test_textfile_writer_is_atomic_and_checks_its_input(tmp_path: Path) -> None:
    env = dict(os.environ, KVM_EXITSTAT=str(VIEWER))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(TEXTFILE), *args], capture_output=True,
                              text=True, env=env)

    p = run()
    assert p.returncode == 2 and "usage: kvm-exitstat-textfile DIR" in p.stderr
    p = run(str(tmp_path / "nope"))
    assert p.returncode == 1 and "not a directory" in p.stderr
    assert run(str(tmp_path), "-f", str(CAPTURES[0])).returncode == 0
    prom = tmp_path / "kvm_exit_stats.prom"
    good = prom.read_text()
    assert 'kvm_exits_total{vendor="VMX",reason="CPUID",nr="10"} 10000' in good
    assert oct(prom.stat().st_mode & 0o777) == "0o644"
    # A failing viewer leaves the last good file and no temporary one.
    bad = tmp_path / "bad.txt"
    bad.write_text("# kvm_exit_stats 9\n")
    p = run(str(tmp_path), "-f", str(bad))
    assert p.returncode == 1 and "version" in p.stderr
    assert prom.read_text() == good
    assert sorted(f.name for f in tmp_path.iterdir()) == ["bad.txt", "kvm_exit_stats.prom"]
