"""Parser for the exit_stats debugfs format (version 1), for the tests."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

HEADER_KEYS = ["kvm_exit_stats", "vendor", "clock", "tsc_khz", "since_reset_ns"]
COLUMNS = "reason name count cycles min avg max hist"


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

    def same_counters(self, other: "Row") -> bool:
        return (self.count, self.cycles, self.min, self.max, self.hist) == \
            (other.count, other.cycles, other.min, other.max, other.hist)


@dataclass
class ExitStats:
    header: dict[str, str]
    rows: dict[str, Row]   # by name, without TOTAL
    total: Row

    def count(self, name: str) -> int:
        return self.rows[name].count if name in self.rows else 0


ROW = re.compile(r"^(-|\d+) (\S+) (\d+) (\d+) (\d+) (\d+) (\d+)(?: (\d+:\d+(?:,\d+:\d+)*))?$")


def parse(text: str) -> ExitStats:
    lines = text.strip("\n").split("\n")
    header: dict[str, str] = {}
    rows: dict[str, Row] = {}
    total = None
    for i, line in enumerate(lines):
        if i < len(HEADER_KEYS):
            key, _, value = line.removeprefix("# ").partition(" ")
            if not line.startswith("# ") or key != HEADER_KEYS[i]:
                raise ValueError(f"line {i + 1}: expected header {HEADER_KEYS[i]}: {line!r}")
            header[key] = value
            continue
        if i == len(HEADER_KEYS):
            if line != "# " + COLUMNS:
                raise ValueError(f"bad column line {line!r}")
            continue
        m = ROW.match(line)
        if not m:
            raise ValueError(f"line {i + 1}: bad row {line!r}")
        reason, name, *nums, hist = m.groups()
        row = Row(None if reason == "-" else int(reason), name,
                  *map(int, nums),
                  hist={int(b): int(c) for b, c in
                        (p.split(":") for p in hist.split(","))} if hist else {})
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
    return ExitStats(header, rows, total)


def add(*stats: ExitStats) -> dict[str, Row]:
    """Sum rows by name, the way the kernel sums vCPUs."""
    out: dict[str, Row] = {}
    for s in stats:
        for name, r in s.rows.items():
            o = out.get(name)
            if o is None:
                out[name] = Row(r.reason, name, r.count, r.cycles, r.min, 0,
                                r.max, dict(r.hist))
                continue
            # A row of unmeasured exits only (bucket 0) shows min 0.
            if r.count > r.hist.get(0, 0):
                o.min = min(o.min, r.min) if o.count > o.hist.get(0, 0) else r.min
            o.count += r.count
            o.cycles += r.cycles
            o.max = max(o.max, r.max)
            for b, c in r.hist.items():
                o.hist[b] = o.hist.get(b, 0) + c
    return out
