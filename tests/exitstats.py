"""Parser for the exit_stats debugfs format (versions 1 to 3), for the tests."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

HEADER_KEYS_V1 = ["kvm_exit_stats", "vendor", "clock", "tsc_khz", "since_reset_ns"]
HEADER_KEYS_V2 = HEADER_KEYS_V1 + ["hist_buckets", "hist_min_shift", "hist_sub_shift"]
HEADER_KEYS = {1: HEADER_KEYS_V1, 2: HEADER_KEYS_V2, 3: HEADER_KEYS_V2}
COLUMNS = {1: "reason name count cycles min avg max hist",
           2: "reason name count cycles min avg max hist",
           3: "reason name count cycles min avg max fastpath hist"}


@dataclass(frozen=True)
class Layout:
    """The histogram's buckets.  Version 1 has those of N=32, M=1, S=0."""
    version: int
    buckets: int     # N (hist_buckets)
    min_shift: int   # M (hist_min_shift)
    sub_shift: int   # S (hist_sub_shift)

    def check(self) -> None:
        n, m, s = self.buckets, self.min_shift, self.sub_shift
        if not (0 <= s <= 4 and 1 <= m <= 20 and 3 <= n <= 256 and s <= m
                and (n - 3) % (1 << s) == 0 and m + ((n - 3) >> s) <= 63):
            raise ValueError(f"bad histogram layout {self}")


V1_LAYOUT = Layout(1, 32, 1, 0)


def bucket_bounds(layout: Layout, b: int) -> tuple[int, float]:
    """[lo, hi) in cycles of bucket b > 0; hi is math.inf for the last one."""
    n, m, s = layout.buckets, layout.min_shift, layout.sub_shift
    if not 0 < b < n:
        raise ValueError(f"no bucket {b} in {layout}")
    if b == 1:
        return 1, 2 ** m
    if b == n - 1:
        return 2 ** (m + ((n - 3) >> s)), math.inf
    j = b - 2
    e = m + (j >> s)
    lo = 2 ** e + (j & ((1 << s) - 1)) * 2 ** (e - s)
    return lo, lo + 2 ** (e - s)


@dataclass
class Row:
    reason: int | None
    name: str
    count: int
    cycles: int
    min: int
    avg: int
    max: int
    hist: dict[int, int] = field(default_factory=dict)
    fastpath: int = 0      # format version 3

    def same_counters(self, other: "Row") -> bool:
        return (self.count, self.cycles, self.min, self.max, self.hist,
                self.fastpath) == (other.count, other.cycles, other.min,
                                   other.max, other.hist, other.fastpath)


def quantile(row: Row, q: float, layout: Layout) -> int:
    """What kvm-exitstat shows for quantile q of row: es_quantile()'s estimate.

    histogram_quantile() of Prometheus: the bucket where the cumulative count
    of the measured exits (bucket 0 left out) reaches q * measured, linear
    interpolation inside it with its bounds narrowed to [min, max], the
    result kept within [min, max]; 0 without measured exits.
    """
    measured = row.count - row.hist.get(0, 0)
    if measured <= 0:
        return 0
    rank = min(max(q, 0.0), 1.0) * measured
    cum = 0
    for b in sorted(k for k, n in row.hist.items() if k and n):
        n = row.hist[b]
        if cum + n >= rank:
            lo, hi = bucket_bounds(layout, b)
            blo, bhi = max(lo, row.min), min(hi, row.max)
            est = blo + (bhi - blo) * ((rank - cum) / n)
            if est <= row.min:
                return row.min
            if est >= row.max:
                return row.max
            return int(est + 0.5)
        cum += n
    return row.max


@dataclass
class ExitStats:
    header: dict[str, str]
    rows: dict[str, Row]   # by name, without TOTAL
    total: Row
    layout: Layout = V1_LAYOUT

    def count(self, name: str) -> int:
        return self.rows[name].count if name in self.rows else 0


ROW = {v: re.compile(r"^(-|\d+) (\S+)" + r" (\d+)" * n +
                    r"(?: (\d+:\d+(?:,\d+:\d+)*))?$")
       for v, n in ((1, 5), (2, 5), (3, 6))}


def parse(text: str) -> ExitStats:
    lines = text.strip("\n").split("\n")
    header: dict[str, str] = {}
    rows: dict[str, Row] = {}
    total = None
    m = re.fullmatch(r"# kvm_exit_stats (\d+)", lines[0])
    if not m:
        raise ValueError(f"line 1: not a kvm exit_stats file: {lines[0]!r}")
    version = int(m.group(1))
    if version not in HEADER_KEYS:
        raise ValueError(f"line 1: format version {version}, not 1 to 3")
    keys = HEADER_KEYS[version]
    layout = V1_LAYOUT
    for i, line in enumerate(lines):
        if i < len(keys):
            key, _, value = line.removeprefix("# ").partition(" ")
            if not line.startswith("# ") or key != keys[i]:
                raise ValueError(f"line {i + 1}: expected header {keys[i]}: {line!r}")
            header[key] = value
            if i == len(keys) - 1 and version >= 2:
                layout = Layout(version, int(header["hist_buckets"]),
                                int(header["hist_min_shift"]),
                                int(header["hist_sub_shift"]))
                layout.check()
            continue
        if i == len(keys):
            if line != "# " + COLUMNS[version]:
                raise ValueError(f"bad column line {line!r}")
            continue
        m = ROW[version].match(line)
        if not m:
            raise ValueError(f"line {i + 1}: bad row {line!r}")
        reason, name, *nums, hist = m.groups()
        fastpath = int(nums.pop(5)) if version >= 3 else 0
        pairs = [tuple(map(int, p.split(":"))) for p in hist.split(",")] if hist else []
        buckets = [b for b, _ in pairs]
        if buckets != sorted(set(buckets)) or any(b >= layout.buckets for b in buckets):
            raise ValueError(f"line {i + 1}: buckets out of order or beyond "
                             f"{layout.buckets - 1}: {line!r}")
        row = Row(None if reason == "-" else int(reason), name,
                  *map(int, nums), hist=dict(pairs), fastpath=fastpath)
        if fastpath > row.count:
            raise ValueError(f"line {i + 1}: more fastpath exits than exits")
        if total is not None:
            raise ValueError("rows after TOTAL")
        if name == "TOTAL":
            total = row
        elif name in rows:
            raise ValueError(f"duplicate row {name}")
        else:
            rows[name] = row
    if total is None:
        raise ValueError("no TOTAL line")
    return ExitStats(header, rows, total, layout)


def add(*stats: ExitStats) -> dict[str, Row]:
    """Sum rows by name, the way the kernel sums vCPUs (of one layout)."""
    if len({s.layout for s in stats}) > 1:
        raise ValueError("histogram layouts differ")
    out: dict[str, Row] = {}
    for s in stats:
        for name, r in s.rows.items():
            o = out.get(name)
            if o is None:
                out[name] = Row(r.reason, name, r.count, r.cycles, r.min, 0,
                                r.max, dict(r.hist), r.fastpath)
                continue
            # A row of unmeasured exits only (bucket 0) shows min 0.
            if r.count > r.hist.get(0, 0):
                o.min = min(o.min, r.min) if o.count > o.hist.get(0, 0) else r.min
            o.count += r.count
            o.fastpath += r.fastpath
            o.cycles += r.cycles
            o.max = max(o.max, r.max)
            for b, c in r.hist.items():
                o.hist[b] = o.hist.get(b, 0) + c
    return out


# kvm.exit_stats_log: the lines of the rst's "Summaries in the kernel log".
LOG_HEAD = re.compile(r"exit_stats: (\S+) vcpu(\d+): summary every (\d+) "
                      r"exits, (\d+) ns since reset$")
LOG_ROW = re.compile(r"exit_stats: (\S+) vcpu(\d+): (-|\d+) (\S+) count (\d+) "
                     r"cycles (\d+) min (\d+) avg (\d+) max (\d+) fastpath (\d+)$")


def summaries(text: str) -> list[tuple[tuple[str, int, int], dict[str, Row]]]:
    """The summaries of a dmesg: ((vm, vcpu, every), rows by name, TOTAL
    included), each whole and alone (one vCPU logs at a time here)."""
    out: list[tuple[tuple[str, int, int], dict[str, Row]]] = []
    for line in text.splitlines():
        if m := LOG_HEAD.search(line):
            out.append(((m[1], int(m[2]), int(m[3])), {}))
            continue
        m = LOG_ROW.search(line)
        if not m or not out or (m[1], int(m[2])) != out[-1][0][:2]:
            raise ValueError(f"not a line of a summary: {line!r}")
        count, cycles, lo, avg, hi, fast = map(int, m.groups()[4:])
        out[-1][1][m[4]] = Row(None if m[3] == "-" else int(m[3]), m[4],
                               count, cycles, lo, avg, hi, fastpath=fast)
    for _, rows in out:
        if list(rows)[-1:] != ["TOTAL"]:
            raise ValueError("a summary without its TOTAL line last")
    return out


DETAIL_HEADER_KEYS = ["kvm_exit_stats_detail", "vendor", "clock", "tsc_khz",
                      "since_reset_ns", "max_keys"]
DETAIL_COLUMNS = "reason name key count cycles avg"
DETAIL_ROW = re.compile(r"^(-|\d+) (\S+) (\S+) (\d+) (\d+) (\d+)$")


@dataclass(frozen=True)
class Detail:
    header: dict[str, str]
    keys: dict[str, dict[str, tuple[int, int]]]   # name -> key -> (count, cycles)

    def count(self, name: str, key: str) -> int:
        return self.keys.get(name, {}).get(key, (0, 0))[0]


def parse_detail(text: str) -> Detail:
    """An exit_stats_detail file (version 1): its header, and each reason's
    sub-reasons with their count and cycles; checks order and averages."""
    lines = text.strip("\n").split("\n")
    header: dict[str, str] = {}
    for i, key in enumerate(DETAIL_HEADER_KEYS):
        k, _, value = lines[i].removeprefix("# ").partition(" ") if i < len(lines) else ("", "", "")
        if not lines[i].startswith("# ") or k != key:
            raise ValueError(f"line {i + 1}: expected header {key}")
        header[k] = value
    if header["kvm_exit_stats_detail"] != "1":
        raise ValueError(f"detail format version {header['kvm_exit_stats_detail']}, not 1")
    n = len(DETAIL_HEADER_KEYS)
    if len(lines) <= n or lines[n] != "# " + DETAIL_COLUMNS:
        raise ValueError("bad column line")
    keys: dict[str, dict[str, tuple[int, int]]] = {}
    for i, line in enumerate(lines[n + 1:], n + 2):
        m = DETAIL_ROW.match(line)
        if not m:
            raise ValueError(f"line {i}: bad row {line!r}")
        _, name, key, count, cycles, avg = m.groups()
        if int(avg) != (int(cycles) // int(count) if int(count) else 0):
            raise ValueError(f"line {i}: avg is not cycles / count")
        group = keys.setdefault(name, {})
        if list(keys)[-1] != name or key in group or "other" in group:
            raise ValueError(f"line {i}: out of order or duplicate: {line!r}")
        if key != "other" and group and int(count) > min(c for c, _ in group.values()):
            raise ValueError(f"line {i}: not the most frequent first: {line!r}")
        group[key] = (int(count), int(cycles))
    return Detail(header, keys)
