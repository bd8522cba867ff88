"""Child processes (``nnUNetv2_train``) that end with the harness, however the harness ends.

Each child is started in a session (and so a process group) of its own, so the terminal's Ctrl-C reaches only the
harness, and the harness stops the child's whole group: its worker processes too. Three ways the group ends:

* **The child exits** (the normal case): :meth:`Child.reap` kills what is left in its group (nnU-Net's
  data-augmentation workers, should any outlive it) while the child's pid is still held by its zombie, then reaps.
* **The harness is stopped** (SIGTERM, SIGINT, its time limit): :meth:`Child.stop` sends SIGTERM to the group,
  waits, then SIGKILL.
* **The harness is killed** (SIGKILL: no handler runs). Two guards:

  - *Death signal* (Linux only): the child asks the kernel, before ``exec``, for SIGKILL when its parent dies
    (``prctl(PR_SET_PDEATHSIG)`` through libc). It reaches the direct child only, and it fires when the *thread*
    that started the child ends, so children are started from the harness's main thread. On other systems this
    step is skipped (no error); the watchdog below still stops the group.
  - *Watchdog*: a small process in a session of its own that holds the read end of a pipe whose only write end is
    in the harness. When the harness dies the kernel closes that end, the watchdog reads end-of-file and kills the
    child's whole group, grandchildren included. It reaches what the death signal does not: nnU-Net's
    data-augmentation workers (``nnUNet_n_proc_DA`` > 0) are the child's children, and batchgenerators' workers
    (0.25.5, ``producer`` in ``nondet_multi_threaded_augmenter.py``) never look at their parent: they loop until
    an ``abort_event`` that only the (dead) trainer's results thread would set, so without the watchdog they would
    run on, orphaned, and keep any lock the trainer's process had open.

What this cannot cover: a ``kill -9`` of the watchdog together with the harness (for example of the harness's whole
process group, which the watchdog is not in; it ignores SIGINT, SIGTERM and SIGHUP), and a process in the group
that moves itself to another session or group.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import IO

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None  # loaded before any fork
DISARM = b"x"  # written to the watchdog when the harness itself has cleaned up the group

# The watchdog: wait on stdin; end-of-file (the harness died) -> kill the group; DISARM -> exit quietly.
_WATCHDOG = """\
import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
pgid = int(sys.argv[1])
try:
    got = os.read(0, 1)
except OSError:
    got = b""
if got != b"x":
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


def die_with_parent() -> None:
    """``preexec_fn``: on Linux, ask for SIGKILL when the parent (the thread that forks) dies; elsewhere a no-op.

    Runs in the forked child before ``exec``; the request survives ``exec``. If the parent already died between
    the fork and this call, the signal would never come: the child then exits at once.
    """
    if _LIBC is None:
        return
    parent = os.getppid()
    _LIBC.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _start_watchdog(pgid: int) -> subprocess.Popen | None:
    try:
        return subprocess.Popen([sys.executable, "-I", "-S", "-c", _WATCHDOG, str(pgid)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:  # no watchdog: the death signal (Linux) and the harness's own handlers remain
        return None


@dataclass
class Child:
    """A started child: its process (the leader of its own process group) and its watchdog."""

    proc: subprocess.Popen
    watchdog: subprocess.Popen | None = None
    cpu_s: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to every process of the child's group (nothing if the group is gone)."""
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def reap(self) -> int | None:
        """The exit code once the child has exited (its group's leftovers killed, the watchdog disarmed), else None.

        ``cpu_s`` is then set: user + system seconds of the child and the children it waited for."""
        if self.proc.returncode is not None:
            return self.proc.returncode
        if hasattr(os, "waitid"):
            if not _exited(self.proc.pid):
                return None
            self.signal_group(signal.SIGKILL)  # leftovers; the zombie still holds the pid, so the group id is ours
            self._disarm()
            flags = 0
        else:  # no waitid (reaping and the clean-up are then a moment apart)
            flags = os.WNOHANG
        try:
            pid, status, usage = os.wait4(self.proc.pid, flags)
        except ChildProcessError:  # reaped elsewhere
            return self.proc.poll()
        if pid == 0:
            return None
        if flags:
            self._disarm()
            self.signal_group(signal.SIGKILL)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_s = usage.ru_utime + usage.ru_stime
        return self.proc.returncode

    def wait(self, poll_s: float = 0.1) -> int:
        """Block until the child exits (its group's leftovers then killed); returns its exit code."""
        while self.reap() is None:
            time.sleep(poll_s)
        return self.proc.returncode

    def stop(self, grace_s: float = 60.0, poll_s: float = 0.1) -> int | None:
        """SIGTERM to the group, up to ``grace_s`` for the child to exit, then SIGKILL; returns the exit code."""
        if self.reap() is not None:
            return self.proc.returncode
        self.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if self.reap() is not None:
                return self.proc.returncode
            time.sleep(poll_s)
        self.signal_group(signal.SIGKILL)
        return self.wait(poll_s)

    def _disarm(self) -> None:
        w, self.watchdog = self.watchdog, None
        if w is None:
            return
        try:
            w.stdin.write(DISARM)
            w.stdin.close()
        except OSError:
            pass
        try:
            w.wait(timeout=10)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def _exited(pid: int) -> bool:
    """Whether ``pid`` (our child) has exited, without reaping it (so its pid, and group id, stay ours)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def start(argv: list[str], env: dict[str, str], stdout: IO | int | None) -> Child:
    """Start ``argv`` in a new session, with the death signal (Linux) and a watchdog; stderr goes to ``stdout``.

    :param argv: the command (its first element is the executable).
    :param env: its environment.
    :param stdout: where its output goes (a file, ``subprocess.DEVNULL``, ...).
    :raises FileNotFoundError: the executable does not exist.
    """
    proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=die_with_parent)
    return Child(proc, _start_watchdog(proc.pid))
