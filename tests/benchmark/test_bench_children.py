"""The harness's trainings end with the harness (SIGTERM, SIGKILL, normal exit), and one harness per output folder.

No nnU-Net: a fake ``nnUNetv2_train`` forks a "worker" that, like batchgenerators' data-augmentation workers, never
looks at its parent, then sleeps. A process counts as gone when ``/proc/<pid>`` is missing or its state is ``Z``
(a zombie: killed, waiting for whoever inherited it to reap it).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hypera_nnunet.benchmark import children
from hypera_nnunet.benchmark import cli as bench_cli
from hypera_nnunet.common.locks import FolderLock

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the death signal is Linux's")

# The fake trainer: fork a worker that loops forever, record both pids (the trainer's last), sleep.
FAKE_TRAIN = """#!{python}
import os, sys, time
pids = os.environ["FAKE_PIDS"]
worker = os.fork()
if worker == 0:
    while True:
        time.sleep(0.05)
for name, pid in (("worker", worker), ("trainer", os.getpid())):
    with open(os.path.join(pids, name + ".tmp"), "w") as f:
        f.write(str(pid))
    os.replace(os.path.join(pids, name + ".tmp"), os.path.join(pids, name + ".pid"))
time.sleep(float(os.environ.get("FAKE_SLEEP", "600")))
sys.exit(int(os.environ.get("FAKE_RC", "0")))
"""

# A harness: the benchmark CLI with the fake trainer's folder as its nnUNetv2_train and a fast poll.
DRIVER = """
import functools, sys
from hypera_nnunet.benchmark import cli
cli.run_jobs = functools.partial(cli.run_jobs, exe_dir=sys.argv[1], poll_s=0.1, stop_grace_s=5)
sys.exit(cli.main(sys.argv[2:]))
"""


def state(pid: int) -> str | None:
    """The process's state letter from ``/proc/<pid>/stat`` (None: no such process)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def gone(pid: int) -> bool:
    return state(pid) in (None, "Z")


def wait_until(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def read_pids(folder: Path, timeout: float = 30.0) -> tuple[int, int]:
    assert wait_until(lambda: (folder / "trainer.pid").is_file(), timeout), "the fake trainer never started"
    return int((folder / "trainer.pid").read_text()), int((folder / "worker.pid").read_text())


def fake_exe(tmp_path: Path) -> Path:
    exe_dir = tmp_path / "bin"
    exe_dir.mkdir()
    exe = exe_dir / "nnUNetv2_train"
    exe.write_text(FAKE_TRAIN.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe_dir


def kill_quietly(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def harness(fake_nnunet, tmp_path):
    """Start a harness process on one new fold; yields (process, trainer pid, worker pid, args, out)."""
    pids = tmp_path / "pids"
    pids.mkdir()
    out = fake_nnunet / "bench"
    args = ["-d", "999", "-f", "2", "-tr", "nnUNetTrainer", "--out", str(out), "--no-surface"]
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(fake_exe(tmp_path)), *args],
                            env={**os.environ, "FAKE_PIDS": str(pids)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    trainer, worker = read_pids(pids)
    yield proc, trainer, worker, args, out
    kill_quietly(proc.pid, trainer, worker)
    proc.wait()


def test_kill_9_of_the_harness_ends_its_training_and_the_trainings_workers(harness, capsys):
    proc, trainer, worker, args, out = harness
    assert state(trainer) in ("S", "R") and state(worker) in ("S", "R")
    # a second harness on the same output folder refuses while the first one lives, naming its pid
    assert bench_cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"is locked by pid {proc.pid} " in err and str(out) in err and len(err.strip().splitlines()) == 1
    proc.kill()  # SIGKILL: no handler of the harness runs
    proc.wait()
    assert wait_until(lambda: gone(trainer), 5.0), f"trainer {trainer} outlived the harness: {state(trainer)}"
    assert wait_until(lambda: gone(worker), 5.0), f"worker {worker} outlived the harness: {state(worker)}"
    FolderLock(out).acquire().release()  # the kernel released the dead harness's lock: a re-run may start


def test_sigterm_stops_the_trainings_process_group(harness):
    proc, trainer, worker, _, _ = harness
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert f"stopping nnUNetTrainer_50epochs_25iters fold 2 (pid {trainer} and its process group)" in output
    assert gone(trainer) and gone(worker)


def test_death_signal_alone_ends_the_direct_child(tmp_path):
    """PR_SET_PDEATHSIG without the watchdog: the direct child dies with its parent; without it, it lives on."""
    def parent_with_child(preexec: bool) -> int:
        code = ("import subprocess, sys, time\n"
                "from hypera_nnunet.benchmark.children import die_with_parent\n"
                "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], "
                f"preexec_fn={'die_with_parent' if preexec else 'None'})\n"
                "print(c.pid, flush=True)\ntime.sleep(600)\n")
        parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        return child

    protected, unprotected = parent_with_child(True), parent_with_child(False)
    try:
        assert wait_until(lambda: gone(protected), 5.0)
        time.sleep(0.5)
        assert state(unprotected) in ("S", "R")  # the control: an ordinary child outlives its parent
    finally:
        kill_quietly(protected, unprotected)


def test_a_finished_childs_leftover_workers_are_killed_and_its_exit_code_kept(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    exe = fake_exe(tmp_path) / "nnUNetv2_train"
    child = children.start([str(exe)], {**os.environ, "FAKE_PIDS": str(pids), "FAKE_SLEEP": "0.2", "FAKE_RC": "7"},
                           subprocess.DEVNULL)
    trainer, worker = read_pids(pids)
    try:
        assert child.wait() == 7
        assert child.cpu_s is not None and child.watchdog is None  # reaped by wait4, watchdog disarmed
        assert wait_until(lambda: gone(worker), 5.0)
    finally:
        kill_quietly(trainer, worker)


def test_stop_escalates_to_sigkill_for_a_child_that_ignores_sigterm(tmp_path):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); " \
           "time.sleep(600)"
    child = children.start([sys.executable, "-c", code], dict(os.environ), subprocess.PIPE)
    assert child.proc.stdout.readline() == b"ready\n"
    t0 = time.monotonic()
    assert child.stop(grace_s=0.5) == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - t0 < 5.0
