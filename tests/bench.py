#!/usr/bin/env python3
"""`make bench`: the per-exit cost of exit accounting, in emulated TSC ticks.

Boots the four kernels of `tests/kernel bench-build` (unpatched, patched, and
both with tracepoints) on SVM (QEMU -icount) and VMX (bochs corei7_skylake_x,
EPT), runs build/kes-bench in each, prints the table, writes
build/bench.json and fills the generated part of Documentation/benchmarks.md
and Documentation/bench-read-scaling.png.  The emulated TSC counts executed
instructions, so the figures repeat from boot to boot.

usage: tests/bench.py [--vendor svm|vmx]... [--repeats N] [--no-doc]
       tests/bench.py --from-json [FILE]   (only redo the tables and plot)
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
DOC = ROOT / "Documentation" / "benchmarks.md"
PLOT = ROOT / "Documentation" / "bench-read-scaling.png"
BENCH_BIN = BUILD / "kes-bench"

# run-in-vm flavours: VMX with EPT and unrestricted guest, as on any modern host.
VENDORS = {"svm": "svm", "vmx": "vmx-ept"}
KINDS = {"cpuid": 20000, "rdmsr": 20000, "hlt": 5000, "io": 5000}
# Memory: this many vCPUs in one VM, each running the six-kind mix once.
MEM_VCPUS = 64
MEM_CONFIGS = ["unpatched", "stats off", "stats on"]
# The rows (per vCPU) that the mix must give with stats on.
MEM_ROWS = {"svm": {"cpuid": 1, "io": 2, "msr": 2, "hlt": 1},
            "vmx": {"CPUID": 1, "IO_INSTRUCTION": 2, "MSR_READ": 1,
                    "MSR_WRITE": 1, "HLT": 1}}
# The read of unbacked memory: the first vCPU's is an EPT violation, the
# others find the MMIO SPTE it left and take an EPT misconfig.
MEM_FAULT_ROWS = {"svm": ["npf"], "vmx": ["EPT_VIOLATION", "EPT_MISCONFIG"]}
VCPUS = [1, 64, 256, 1024]
READ_FILES = ["exits", "exit_stats", "vm-exits", "vm-exit_stats"]

PARAM = "/sys/module/kvm/parameters/exit_stats"
LOG_PARAM = "/sys/module/kvm/parameters/exit_stats_log"
DETAIL_PARAM = "/sys/module/kvm/parameters/exit_stats_detail"
TRACE = "/sys/kernel/tracing/events/kvm"
STATS = "/sys/kernel/debug/kvm/exit_stats"

# Columns of the table: (name, kernel, what the guest script sets up).
CONFIGS = [
    ("unpatched", "base", ""),
    ("stats off", "patched", f"echo 0 > {PARAM}"),
    ("stats on", "patched", f"echo 1 > {PARAM}"),
    # A summary in the kernel log every 500 exits of a vCPU.
    ("stats on, log 500", "patched", f"echo 1 > {PARAM}; echo 500 > {LOG_PARAM}"),
    # Without sub-reasons: RDMSR and IO exits back on the inline path.
    ("stats on, no detail", "patched",
     f"echo 0 > {LOG_PARAM}; echo 0 > {DETAIL_PARAM}"),
    ("tracepoints on", "base-ftrace",
     f"echo 1 > {TRACE}/kvm_exit/enable; echo 1 > {TRACE}/kvm_entry/enable"),
    # Extra figures, in the JSON and the second table.
    ("ftrace kernel", "base-ftrace", ""),
    ("ftrace kernel, stats on", "patched-ftrace", f"echo 1 > {PARAM}"),
]
MAIN = ["unpatched", "stats off", "stats on", "tracepoints on"]

Results = dict[str, Any]


def guest_script(kernel: str, repeats: int) -> str:
    """The shell command run in one boot of @kernel: every config on it."""
    lines = ["mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null"]
    for name, k, setup in CONFIGS:
        if k != kernel:
            continue
        lines.append(f"echo 'config {name}'")
        if setup:
            lines.append(setup)
        for kind, n in KINDS.items():
            lines.append(f"kes-bench exit {kind} {n} {repeats} || exit 1")
        # Proof that the setup took effect: what was counted or traced.
        if kernel.startswith("patched"):
            lines.append(f"echo \"counted $(grep ' CPUID \\| cpuid ' {STATS})\"")
            lines.append(f"echo 0 > {STATS}_reset")
        if LOG_PARAM in setup:
            lines.append("echo \"logged $(dmesg | grep -c 'exit_stats: .* TOTAL')\"")
        if name in MEM_CONFIGS:
            lines.append(f"kes-bench mem {MEM_VCPUS} {repeats + 2} || exit 1")
        # The next config counts from zero (the mix's CPUIDs included).
        if kernel.startswith("patched") and name in MEM_CONFIGS:
            lines.append(f"echo 0 > {STATS}_reset")
        if "kvm_exit" in setup:
            lines.append("echo \"traced $(grep -c kvm_exit /sys/kernel/tracing/trace)\"")
            lines.append(f"echo 0 > {TRACE}/kvm_exit/enable; "
                         f"echo 0 > {TRACE}/kvm_entry/enable")
    if kernel == "patched":
        lines.append(f"echo 1 > {PARAM}; echo 0 > {LOG_PARAM}; echo 1 > {DETAIL_PARAM}")
        for n in VCPUS:
            lines.append(f"kes-bench read {n} {repeats} || exit 1")
    return "\n".join(lines)


def boot(vendor: str, kernel: str, repeats: int) -> str:
    bz = BUILD / f"bench-{kernel}" / "arch" / "x86" / "boot" / "bzImage"
    if not bz.exists():
        sys.exit(f"bench: {bz} missing: run 'tests/kernel bench-build'")
    log = BUILD / f"bench-{vendor}-{kernel}.log"
    cmd = [str(ROOT / "tests" / "run-in-vm"), "--vendor", VENDORS[vendor],
           "--kernel", str(bz), "--add", str(BENCH_BIN), "--timeout", "1500",
           # No heartbeat process waking up in the middle of a measurement.
           "--heartbeat", "0",
           "--log", str(log), "--", guest_script(kernel, repeats)]
    print(f"bench: {vendor} {kernel} ...", file=sys.stderr, flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bench: {vendor} {kernel} failed ({p.returncode}):\n"
                 f"{p.stdout[-2000:]}{p.stderr[-2000:]}\nsee {log}")
    return p.stdout


def parse(vendor: str, out: str, res: Results, repeats: int) -> None:
    config = None
    for line in out.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "config":
            config = line[len("config "):]
        elif f[0] == "exit" and config:
            res["exit"][vendor].setdefault(config, {}).setdefault(
                f[1], []).append(float(f[3]))
        elif f[0] == "read":
            res["read"][vendor].setdefault(f[1], {}).setdefault(
                f[2], []).append(int(f[4]))
        elif f[0] == "mem" and config:
            res["mem"][vendor].setdefault(config, []).append(int(f[3]))
            if len(f) > 5:
                res.setdefault("memslab", {}).setdefault(vendor, {}).setdefault(
                    config, []).append([int(f[4]), int(f[5])])
        elif f[0] == "memrow" and config:
            res["memrows"][vendor].setdefault(config, {})[f[1]] = int(f[2])
        elif f[0] in ("counted", "traced", "logged") and config:
            res["checks"][vendor][config if f[0] != "logged" else f"{config}, logged"] = line
            check(vendor, config, f, repeats)


def check(vendor: str, config: str, f: list[str], repeats: int) -> None:
    """The stats counted exactly our CPUIDs, or nothing when off; tracing traced."""
    if f[0] in ("traced", "logged"):
        if int(f[1]) == 0:
            sys.exit(f"bench: {vendor} {config}: nothing was {f[0]}")
        return
    want = KINDS["cpuid"] * repeats if "stats on" in config else 0
    got = int(f[3]) if len(f) > 3 else 0
    if got != want:
        sys.exit(f"bench: {vendor} {config}: exit_stats counted {got} CPUID "
                 f"exits, expected {want}")


def check_mem_rows(res: Results, vendor: str) -> None:
    """The memory run counted the mix exactly with stats on, nothing when off."""
    rows = res["memrows"][vendor]
    if rows.get("unpatched") or rows.get("stats off", {}).get("TOTAL", 0):
        sys.exit(f"bench: {vendor}: the mix was counted without stats: {rows}")
    on = rows.get("stats on", {})
    for name, per_vcpu in MEM_ROWS[vendor].items():
        if on.get(name) != per_vcpu * MEM_VCPUS:
            sys.exit(f"bench: {vendor} stats on: {name} counted {on.get(name)}, "
                     f"expected {per_vcpu * MEM_VCPUS}")
    faults = MEM_FAULT_ROWS[vendor]
    if sum(on.get(name, 0) for name in faults) < MEM_VCPUS:
        sys.exit(f"bench: {vendor} stats on: fewer than {MEM_VCPUS} "
                 f"{' + '.join(faults)} exits: {on}")


def mem_per_vcpu(res: Results, vendor: str, config: str) -> float:
    """KiB per vCPU over the unpatched kernel, medians of the repeats."""
    mem = res["mem"][vendor]
    return (statistics.median(mem[config]) -
            statistics.median(mem["unpatched"])) / MEM_VCPUS


def mem_table(res: Results, vendor: str) -> list[str]:
    mem = res["mem"][vendor]
    rows = ["| | " + " | ".join(MEM_CONFIGS) + " | Δ stats off | Δ stats on |",
            "|" + "---|" * (len(MEM_CONFIGS) + 3)]
    rows.append(f"| KiB for {MEM_VCPUS} vCPUs | " +
                " | ".join(f"{statistics.median(mem[c]):.0f} "
                           f"({min(mem[c])}–{max(mem[c])})" for c in MEM_CONFIGS) +
                f" | {mem_per_vcpu(res, vendor, 'stats off') * MEM_VCPUS:+.0f}"
                f" | {mem_per_vcpu(res, vendor, 'stats on') * MEM_VCPUS:+.0f} |")
    rows.append("| KiB per vCPU | " +
                " | ".join(f"{statistics.median(mem[c]) / MEM_VCPUS:.2f}"
                           for c in MEM_CONFIGS) +
                f" | {mem_per_vcpu(res, vendor, 'stats off'):+.2f}"
                f" | {mem_per_vcpu(res, vendor, 'stats on'):+.2f} |")
    slab = res.get("memslab", {}).get(vendor)
    if slab:
        for i, kind in enumerate(("reclaimable", "unreclaimable")):
            med = {c: statistics.median(x[i] for x in slab[c]) / MEM_VCPUS
                   for c in MEM_CONFIGS}
            rows.append(f"| of which slab, {kind}, KiB per vCPU | " +
                        " | ".join(f"{med[c]:.2f}" for c in MEM_CONFIGS) +
                        f" | {med['stats off'] - med['unpatched']:+.2f}"
                        f" | {med['stats on'] - med['unpatched']:+.2f} |")
    return rows


def summary(v: list[float]) -> dict[str, float]:
    return {"min": min(v), "median": statistics.median(v), "max": max(v)}


def fmt_cell(v: list[float]) -> str:
    s = summary(v)
    if s["min"] == s["max"]:
        return f"{s['median']:.1f}"
    return f"{s['median']:.1f} ({s['min']:.1f}–{s['max']:.1f})"


def exit_table(res: Results, vendor: str, configs: list[str]) -> list[str]:
    ex = res["exit"][vendor]
    head = ["exit"] + configs + ["Δ stats off", "Δ stats on", "Δ tracepoints"]
    rows = ["| " + " | ".join(head) + " |",
            "|" + "---|" * len(head)]
    for kind in KINDS:
        med = {c: statistics.median(ex[c][kind]) for c in configs}
        base = med["unpatched"]
        rows.append("| " + " | ".join(
            [kind] + [fmt_cell(ex[c][kind]) for c in configs] +
            [f"{med['stats off'] - base:+.1f}", f"{med['stats on'] - base:+.1f}",
             f"{med['tracepoints on'] - base:+.1f}"]) + " |")
    return rows


def pair_table(res: Results, vendor: str, a: str, b: str) -> list[str]:
    """Ticks per exit of config @a and @b, and b - a."""
    ex = res["exit"][vendor]
    rows = [f"| exit | {a} | {b} | Δ |", "|---|---|---|---|"]
    for kind in KINDS:
        x, y = ex[a][kind], ex[b][kind]
        rows.append(f"| {kind} | {fmt_cell(x)} | {fmt_cell(y)} | "
                    f"{statistics.median(y) - statistics.median(x):+.1f} |")
    return rows


def read_table(res: Results, vendor: str) -> list[str]:
    rd = res["read"][vendor]
    rows = ["| vCPUs | " + " | ".join(READ_FILES) +
            " | exit_stats / exits | vm-exit_stats / vm-exits |",
            "|" + "---|" * (len(READ_FILES) + 3)]
    for n in VCPUS:
        med = {f: statistics.median(rd[f][str(n)]) for f in READ_FILES}
        rows.append(f"| {n} | " + " | ".join(f"{med[f]:.0f}" for f in READ_FILES) +
                    f" | {med['exit_stats'] / med['exits']:.1f} |"
                    f" {med['vm-exit_stats'] / med['vm-exits']:.1f} |")
    return rows


def markdown(res: Results) -> str:
    out = []
    for vendor in res["exit"]:
        name = {"svm": "SVM (QEMU -icount)", "vmx": "VMX (bochs corei7_skylake_x, EPT)"}[vendor]
        out += [f"### {name}: ticks per exit", ""]
        out += exit_table(res, vendor, MAIN) + [""]
        out += [f"With tracepoints compiled in (CONFIG_FTRACE, tracepoints off):", ""]
        out += pair_table(res, vendor, "ftrace kernel", "ftrace kernel, stats on") + [""]
        if "stats on, log 500" in res["exit"][vendor]:
            out += ["With a summary in the kernel log every 500 exits "
                    "(kvm.exit_stats_log=500):", ""]
            out += pair_table(res, vendor, "stats on", "stats on, log 500") + [""]
        if "stats on, no detail" in res["exit"][vendor]:
            out += ["Without sub-reasons (kvm.exit_stats_detail=0): RDMSR and "
                    "port IO back on the inline path:", ""]
            out += pair_table(res, vendor, "stats on, no detail", "stats on") + [""]
        if vendor in res["read"] and res["read"][vendor]:
            out += [f"### {name}: reading, ticks per open+read+close", ""]
            out += read_table(res, vendor) + [""]
        if res.get("mem", {}).get(vendor):
            out += [f"### {name}: memory, free memory used by one VM whose "
                    f"{MEM_VCPUS} vCPUs each ran the six-kind mix", ""]
            out += mem_table(res, vendor) + [""]
    return "\n".join(out)


def plot(res: Results) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vendors = [v for v in res["read"] if res["read"][v]]
    fig, axes = plt.subplots(1, len(vendors), figsize=(6 * len(vendors), 4.5),
                             squeeze=False)
    for ax, vendor in zip(axes[0], vendors):
        rd = res["read"][vendor]
        for f in READ_FILES:
            ax.plot(VCPUS, [statistics.median(rd[f][str(n)]) for n in VCPUS],
                    marker="o", label=f)
        ax.set_title(f"{vendor.upper()}: reading one file")
        ax.set_xlabel("vCPUs (each ran once)")
        ax.set_ylabel("TSC ticks (emulated: instructions)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=100)


def delta(res: Results, vendor: str, config: str, kind: str) -> float:
    ex = res["exit"][vendor]
    return (statistics.median(ex[config][kind]) -
            statistics.median(ex["unpatched"][kind]))


def goals(res: Results) -> str:
    """The issue's goals, each with its figures and a verdict."""
    out = []

    def goal(ok: bool, text: str) -> None:
        out.append(f"- **{'met' if ok else 'missed'}**: {text}")

    for vendor in res["exit"]:
        for kind in KINDS:
            on, off = (delta(res, vendor, c, kind) for c in ("stats on", "stats off"))
            goal(on <= 30, f"{vendor.upper()}: stats on add {on:+.1f} ticks per "
                 f"{kind} exit (goal: at most 30)")
            goal(off <= 2, f"{vendor.upper()}: stats off add {off:+.1f} ticks per "
                 f"{kind} exit (goal: at most 2)")
    for vendor in res.get("mem", {}):
        if not res["mem"][vendor]:
            continue
        off, on = (mem_per_vcpu(res, vendor, c) for c in ("stats off", "stats on"))
        goal(abs(off) <= 0.25, f"{vendor.upper()}: stats off use {off:+.2f} KiB per "
             "vCPU more than unpatched (goal: nothing allocated, within ±0.25 KiB "
             "of measurement noise)")
        goal(on <= 8, f"{vendor.upper()}: stats on use {on:+.2f} KiB per vCPU that "
             "took six kinds of exit (goal: at most 8 KiB)")
        # The counters are pages; the slab that stats on adds is the two
        # debugfs files per vCPU.
        slab = res.get("memslab", {}).get(vendor)
        pages = on - off
        if slab:
            med = {c: statistics.median(x[1] for x in slab[c]) / MEM_VCPUS
                   for c in ("stats off", "stats on")}
            pages -= med["stats on"] - med["stats off"]
        goal(pages <= 8.25, f"{vendor.upper()}: the counters (stats on minus stats "
             f"off, without slab) use {pages:+.2f} KiB per vCPU (goal: two pages, "
             "8 KiB, within ±0.25 KiB of measurement noise)")
    for vendor, rd in res["read"].items():
        if not rd:
            continue
        med = {f: [statistics.median(rd[f][str(n)]) for n in VCPUS] for f in READ_FILES}
        for ours, theirs in (("exit_stats", "exits"), ("vm-exit_stats", "vm-exits")):
            ratio = med[ours][-1] / med[theirs][-1]
            goal(ratio <= 10, f"{vendor.upper()}: reading `{ours}` with {VCPUS[-1]} "
                 f"vCPUs costs {ratio:.1f}× `{theirs}` (goal: at most 10×)")
            # Linear: the cost per added vCPU stays the same as vCPUs grow.
            slopes = [(med[ours][i + 1] - med[ours][i]) / (VCPUS[i + 1] - VCPUS[i])
                      for i in range(1, len(VCPUS) - 1)]
            goal(max(slopes) <= 1.5 * min(slopes),
                 f"{vendor.upper()}: `{ours}` grows linearly, "
                 + ", ".join(f"{x:.0f}" for x in slopes)
                 + f" ticks per added vCPU between {VCPUS[1]}, {VCPUS[2]} and {VCPUS[3]}")
    return "\n".join(out)


def update_doc(marker: str, text: str) -> None:
    doc = DOC.read_text()
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    if begin not in doc or end not in doc:
        sys.exit(f"bench: {DOC} lacks the {begin} ... {end} markers")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    DOC.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vendor", action="append", choices=sorted(VENDORS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-doc", action="store_true",
                    help="do not update Documentation/")
    ap.add_argument("--from-json", nargs="?", const=BUILD / "bench.json",
                    type=Path, metavar="FILE",
                    help="no runs: redo the tables and plot from FILE")
    args = ap.parse_args()
    if args.from_json:
        res = json.loads(args.from_json.read_text())
        print(markdown(res) + "\n\n" + goals(res))
        if not args.no_doc:
            update_doc("bench", markdown(res))
            update_doc("goals", goals(res))
            plot(res)
        return 0
    if args.repeats < 3:
        ap.error("--repeats must be at least 3")
    vendors = args.vendor or list(VENDORS)

    res: Results = {"unit": "emulated TSC ticks", "repeats": args.repeats,
                    "exits_per_run": KINDS, "exit": {}, "read": {}, "checks": {},
                    "mem": {}, "memrows": {}}
    for vendor in vendors:
        for key in ("exit", "read", "checks", "mem", "memrows"):
            res[key][vendor] = {}
        for kernel in ("base", "patched", "base-ftrace", "patched-ftrace"):
            parse(vendor, boot(vendor, kernel, args.repeats), res, args.repeats)
            # What was measured so far survives a failed check.
            (BUILD / "bench.json").write_text(json.dumps(res, indent=1) + "\n")
        check_mem_rows(res, vendor)
    text = markdown(res)
    print(text + "\n\n" + goals(res))
    print(f"bench: wrote {BUILD / 'bench.json'}", file=sys.stderr)
    if not args.no_doc:
        update_doc("bench", text)
        update_doc("goals", goals(res))
        plot(res)
        print(f"bench: updated {DOC} and {PLOT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
