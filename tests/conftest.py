"""Shared fixtures: one boot per vendor runs the whole guest scenario."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("KES_BUILD", ROOT / "build"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# svm: QEMU; vmx: bochs skylake_x with kvm_intel.ept=0; vmx-ept: the same
# with EPT and unrestricted guest; vmx-penryn: a CPU without either.
VENDORS = ["svm", "vmx", "vmx-ept", "vmx-penryn"]


class GuestRun:
    """Output of tests/guest/kes-e2e, split into its '@@@ name' sections."""

    def __init__(self, vendor: str, stdout: str, stderr: str, status: int):
        self.vendor = vendor
        self.stdout = stdout
        self.stderr = stderr
        self.status = status
        self.console = ""
        self.sections: dict[str, str] = {}
        name = None
        for line in stdout.splitlines(keepends=True):
            if line.startswith("@@@ "):
                name = line[4:].strip()
                self.sections[name] = ""
            elif name is not None:
                self.sections[name] += line

    def __getitem__(self, name: str) -> str:
        assert name in self.sections, (
            f"{self.vendor}: section {name} missing; stderr:\n{self.stderr}")
        return self.sections[name]


def dumps(text: str) -> dict[str, str]:
    """Split exitload --dump output into its '=== path' files."""
    files: dict[str, str] = {}
    name = None
    for line in text.splitlines(keepends=True):
        if line.startswith("=== "):
            name = re.sub(r"^/sys/kernel/debug/kvm/[^/]+/", "", line[4:].strip())
            files[name] = ""
        elif name is not None:
            files[name] += line
    return files


_runs: dict[tuple[str, ...], GuestRun] = {}
_kernels: dict[str, Path] = {}


def built_kernel(target: str = "build", obj: str = "kobj") -> Path:
    """Build (or bring up to date) a kernel of tests/kernel TARGET, in
    build/OBJ, once per session; its bzImage."""
    if target not in _kernels:
        p = subprocess.run([str(ROOT / "tests" / "kernel"), target],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        _kernels[target] = BUILD / obj / "arch" / "x86" / "boot" / "bzImage"
    return _kernels[target]


def boot(vendor: str, command: str = "kes-e2e", append: str = "",
         kernel: Path | None = None, smp: int = 1, mem: int = 512,
         adds: tuple[Path, ...] = (), timeout: int = 900) -> GuestRun:
    """Boot once per (vendor, command, append, kernel, smp); split the
    output."""
    tag = (f"{vendor}-{command.split()[0]}" +
           (f"-{kernel.parent.parent.parent.parent.name}" if kernel else "") +
           (f"-smp{smp}" if smp > 1 else ""))
    kernel = kernel or built_kernel()
    key = (vendor, command, append, str(kernel), str(smp))
    if key not in _runs:
        log = BUILD / f"e2e-{tag}.log"
        cmd = [str(ROOT / "tests" / "run-in-vm"), "--vendor", vendor,
               "--timeout", str(timeout), "--log", str(log), "--append", append,
               "--verbose", "--smp", str(smp), "--mem", str(mem),
               *[a for f in adds for a in ("--add", str(f))],
               "--add", str(BUILD / "exitload"), "--add", str(BUILD / "kes-io"),
               "--add", str(BUILD / "kes-vga"),
               "--add", str(BUILD / "selftest" / "exit_stats_test"),
               "--add", str(BUILD / "selftest" / "exit_stats_nested_test"),
               "--add", str(ROOT / "tests" / "guest" / "kes-e2e"),
               "--add", str(ROOT / "tests" / "guest" / "kes-boot-off"),
               "--add", str(ROOT / "tests" / "guest" / "kes-lockdown"),
               "--add", str(ROOT / "userspace" / "kvm-exitstat"),
               "--kernel", str(kernel),
               "--", command]
        p = subprocess.run(cmd, capture_output=True, text=True)
        (BUILD / f"e2e-{tag}.out").write_text(p.stdout)
        (BUILD / f"e2e-{tag}.err").write_text(p.stderr)
        _runs[key] = GuestRun(vendor, p.stdout, p.stderr, p.returncode)
        _runs[key].console = log.read_text(errors="replace") if log.exists() else ""
    return _runs[key]


@pytest.fixture(scope="session", params=VENDORS)
def run(request: pytest.FixtureRequest) -> GuestRun:
    r = boot(request.param)
    assert r.status == 0, f"{r.vendor}: run-in-vm exited {r.status}:\n{r.stderr}"
    assert "end" in r.sections, f"{r.vendor}: scenario did not finish:\n{r.stderr}"
    return r
