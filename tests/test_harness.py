"""tests/run-in-vm itself: it reads all an emulator writes, and it ends a
stuck emulator quickly with a message that says so.

The first tests drive its supervisor with stand-in emulators (small Python
programs) that do what bochs and QEMU do at their worst; the e2e tests at the
end do it with the real emulators.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from conftest import ROOT, GuestRun, built_kernel

RUN_IN_VM = ROOT / "tests" / "run-in-vm"
MIB = 1 << 20


def load_run_in_vm() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("run_in_vm", str(RUN_IN_VM))
    spec = importlib.util.spec_from_loader("run_in_vm", loader)
    assert spec
    mod = importlib.util.module_from_spec(spec)
    sys.modules["run_in_vm"] = mod  # dataclasses look their module up
    loader.exec_module(mod)
    return mod


rv = load_run_in_vm()

def fake(tmp_path: Path, body: str, *args: str) -> list[str]:
    script = tmp_path / "emu.py"
    script.write_text(body)
    return [sys.executable, str(script), *args]


def supervise(tmp_path: Path, body: str, *args: str, timeout: float = 60,
              stall: float = 0) -> object:
    return rv.supervise(fake(tmp_path, body, *args), tmp_path, timeout, stall)


CONSOLE_STATUS = """
with open("console.log", "w") as c:
    c.write("[    1.0] KES-status 0\\n")
"""


def test_screen_pty_is_drained(tmp_path: Path) -> None:
    # As bochs' `term` display: a pty of its own, named on stderr, written
    # until done; without a reader the writes block for good once it is full.
    body = r"""
import fcntl, os, struct, sys, termios, time
m = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
fcntl.ioctl(m, 0x40045431, struct.pack("i", 0))            # TIOCSPTLCK
n = struct.unpack("i", fcntl.ioctl(m, 0x80045430, b"\0" * 4))[0]  # TIOCGPTN
print('00000000000i[      ] Bochs connected to screen "/dev/pts/%d"' % n,
      file=sys.stderr, flush=True)
# As ncurses' cbreak() and noecho() in bochs, before it draws anything.
t = termios.tcgetattr(m)
t[3] &= ~(termios.ICANON | termios.ECHO)
termios.tcsetattr(m, termios.TCSANOW, t)
left = int(sys.argv[1])
while left:
    left -= os.write(m, b"x" * min(left, 65536))
time.sleep(1)   # bochs runs on: what it wrote last is read before it exits
""" + CONSOLE_STATUS
    # Far more than any pty holds (18 KiB to 108 KiB seen here).
    r = supervise(tmp_path, body, str(8 * MIB), timeout=120)
    assert r.failure == ""
    assert r.screen_bytes == 8 * MIB
    assert b"KES-status 0" in r.console


def test_unbounded_stderr_is_read_and_only_its_tail_kept(tmp_path: Path) -> None:
    # bochs with kvm_intel.ept=0 logs an unknown MSR thousands of times a
    # second; none of it may block the emulator or pile up in memory.
    body = r"""
import sys
line = b"00001234i[CPU0  ] RDMSR: Unknown register 0x1d9\n"
for _ in range(int(sys.argv[1]) // len(line)):
    sys.stderr.buffer.write(line)
sys.stderr.buffer.write(b"the last line\n")
""" + CONSOLE_STATUS
    r = supervise(tmp_path, body, str(64 * MIB))
    assert r.failure == ""
    assert len(r.tails["stderr"]) <= rv.EMU_TAIL
    assert r.tails["stderr"].endswith(b"the last line\n")


def test_silent_console_is_a_stall(tmp_path: Path) -> None:
    body = r"""
import time
with open("console.log", "w") as c:
    c.write("[    0.5] booting\n[    1.0] the last words\n")
time.sleep(600)
"""
    t = time.monotonic()
    r = supervise(tmp_path, body, stall=2)
    assert time.monotonic() - t < 15
    assert r.failure == (f"{Path(sys.executable).name} made no progress for 2 s "
                         "(no console output, 0.0 s of CPU time)")
    assert rv.last_line(r.console) == "[    1.0] the last words"


def test_a_busy_emulator_with_a_silent_console_is_no_stall(tmp_path: Path) -> None:
    # bochs running a nested guest: minutes of CPU for a second of guest
    # time, so no heartbeat on the console; it is slow, not stuck.
    body = r"""
while True:
    pass
"""
    r = supervise(tmp_path, body, timeout=6, stall=3)
    assert r.failure == "timed out after 6 s"
    assert r.silence > 5


def test_a_growing_console_is_no_stall_but_times_out(tmp_path: Path) -> None:
    body = r"""
import time
with open("console.log", "w", buffering=1) as c:
    while True:
        c.write("[    1.0] KES-alive\n")
        time.sleep(0.2)
"""
    t = time.monotonic()
    r = supervise(tmp_path, body, timeout=4, stall=1)
    assert 4 <= time.monotonic() - t < 15
    assert r.failure == "timed out after 4 s"


def test_a_screen_that_is_gone_is_no_crash(tmp_path: Path) -> None:
    # bochs names its pty, then dies at once (a bochsrc error, say).
    body = r"""
import sys
sys.stderr.write('Bochs connected to screen "/dev/pts/999999"\n')
sys.stderr.write('00000000000p[      ] >>PANIC<< bochsrc: unknown option\n')
sys.exit(1)
"""
    r = supervise(tmp_path, body, stall=5)
    assert r.failure == ""
    assert r.screen_error == "/dev/pts/999999: No such file or directory"
    assert r.tails["stderr"].endswith(b"unknown option\n")


def test_what_the_emulator_started_is_ended_too(tmp_path: Path) -> None:
    # A child that keeps the emulator's stdout and stderr open: we stop
    # reading them soon after the emulator exits, and end the child.
    body = r"""
import subprocess, sys
child = subprocess.Popen(["sleep", "300"])
print(child.pid, flush=True)
"""
    t = time.monotonic()
    r = supervise(tmp_path, body, timeout=60, stall=0)
    assert time.monotonic() - t < rv.LINGER + 5
    stat = Path(f"/proc/{int(r.tails['stdout'])}/stat")
    for _ in range(50):  # a SIGKILL takes effect soon, not at once
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the emulator's child still runs: {stat}")


def test_sigterm_ends_the_emulator(tmp_path: Path) -> None:
    body = r"""
import time
time.sleep(300)
"""
    old = signal.signal(signal.SIGTERM, rv.on_sigterm)
    timer = threading.Timer(1, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        timer.start()
        t = time.monotonic()
        r = supervise(tmp_path, body, timeout=60, stall=0)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, old)
    assert r.failure == "terminated (SIGTERM)"
    assert time.monotonic() - t < 10


@pytest.mark.parametrize("opt", ["--stall", "--heartbeat"])
def test_negative_seconds_are_a_usage_error(opt: str) -> None:
    p = subprocess.run([str(RUN_IN_VM), opt, "-1", "--", "true"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and f"{opt} must be 0 or positive" in p.stderr


@pytest.mark.parametrize("opt,value,msg", [
    ("--smp", "0", "--smp must be 1 to 8"),
    ("--smp", "9", "--smp must be 1 to 8"),
    ("--mem", "64", "--mem must be 128 to 8192 (MiB)"),
])
def test_smp_and_mem_out_of_range_are_usage_errors(opt: str, value: str,
                                                   msg: str) -> None:
    p = subprocess.run([str(RUN_IN_VM), opt, value, "--", "true"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and msg in p.stderr


def test_smp_emulator_command_lines(tmp_path: Path) -> None:
    """One CPU keeps QEMU's exact clock alone; more CPUs keep it too (the
    CPUs then run in turn: multi-threaded TCG is never used), and bochs
    gets the CPU count and memory in its configuration."""
    k, i = tmp_path / "bzImage", tmp_path / "initrd"
    one = rv.qemu_cmd(k, i, "", 1, 512)
    assert "-icount" in one and "-smp" not in one and "thread=multi" not in " ".join(one)
    two = rv.qemu_cmd(k, i, "", 2, 1024)
    assert two[two.index("-smp") + 1] == "2" and "-icount" in two
    assert two[two.index("-m") + 1] == "1024"
    k.write_bytes(b"")
    i.write_bytes(b"")
    rv.bochs_cmd(k, tmp_path, i, "vmx-ept", "", 2, 1024)
    rc = (tmp_path / "bochsrc").read_text()
    assert "megs: 1024" in rc and "count=2," in rc


def test_heartbeat_in_the_guest_init(tmp_path: Path) -> None:
    def init(beat: float) -> str:
        work = tmp_path / str(beat)
        rv.make_initramfs(work, "true", [], beat)
        return (work / "root" / "init").read_text()

    assert "while :; do sleep 2; echo KES-alive > /dev/kmsg; done &" in init(2)
    assert "sleep 0.5;" in init(0.5)
    assert "KES-alive" not in init(0)


# --- the real emulators -------------------------------------------------


def run_in_vm(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(RUN_IN_VM), "--kernel", str(built_kernel()),
                             *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.e2e
def test_a_quiet_command_is_kept_alive_by_the_heartbeat() -> None:
    # 25 s of guest time without a word, against a 12 s stall limit.
    p = run_in_vm("--vendor", "svm", "--stall", "12", "--timeout", "300",
                  "--", "sleep 25; echo still here")
    out, err = p.communicate()
    assert p.returncode == 0, err
    assert out == "still here\n"


def emulator_of(p: subprocess.Popen[str]) -> int:
    """The pid of run-in-vm's emulator, once it has one.

    Not just any child: without --kernel, run-in-vm first runs `make kernel`.
    """
    for _ in range(1800):
        kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                              text=True).stdout.split()
        for kid in kids:
            try:
                comm = Path(f"/proc/{kid}/comm").read_text().strip()
            except OSError:
                continue
            if comm.startswith(("qemu-system", "bochs")):
                return int(kid)
        time.sleep(0.1)
    p.terminate()
    raise AssertionError("run-in-vm started no emulator")


@pytest.mark.e2e
def test_a_stuck_emulator_fails_fast_and_keeps_its_log(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    p = run_in_vm("--vendor", "svm", "--stall", "10", "--timeout", "600",
                  "--log", str(log), "--", "sleep 600")
    emu = emulator_of(p)
    console = Path(f"/proc/{emu}/cwd") / rv.CONSOLE
    for _ in range(1200):   # until the guest runs the command
        if console.exists() and b"KES-alive" in console.read_bytes():
            break
        time.sleep(0.1)
    else:
        p.terminate()   # run-in-vm ends the emulator on SIGTERM
        p.wait()
        raise AssertionError("the guest never got to its command")
    stopped = time.monotonic()
    os.kill(emu, signal.SIGSTOP)   # as stuck as bochs on a full pty
    out, err = p.communicate(timeout=120)
    waited = time.monotonic() - stopped
    assert p.returncode == rv.EXIT_TIMEOUT, err
    # It may have last run up to a second before it was stopped.
    assert 10 - 1.5 <= waited < 30, waited
    assert "run-in-vm: qemu-system-x86_64 made no progress for 10 s" in err
    assert "last console line: " in err and "KES-alive" in err
    assert b"KES-alive" in log.read_bytes()
    assert out == ""


@pytest.mark.e2e
def test_every_boot_drains_the_screen(run: GuestRun) -> None:
    # Each e2e boot starts with 800 repaints of the VGA text screen.  QEMU
    # (-display none) draws it nowhere; bochs writes it to its pty, more
    # than the pty holds (18 KiB to 108 KiB seen here; measured: about
    # 240 KiB on Penryn, megabytes on Skylake-X), and the run still gets to
    # its end.
    assert run["vga"] == "ok 800\n"
    m = re.search(r"run-in-vm: (\S+): [0-9.]+ s wall, console [0-9]+ bytes, "
                  r"screen pty ([0-9]+) bytes drained", run.stderr)
    assert m, run.stderr
    if run.vendor == "svm":
        assert m.groups() == ("qemu-system-x86_64", "0")
    else:
        assert m[1] == "bochs" and int(m[2]) > 128 * 1024
