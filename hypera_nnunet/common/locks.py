"""An exclusive, non-blocking lock on a folder, held by one process for its lifetime.

``fcntl.flock`` on ``<folder>/.lock``: the kernel releases it when the holder exits, however it exits
(kill -9 included), so a stale lock file never blocks anyone. Forked children close their copy of the
descriptor (``os.register_at_fork``), so worker processes that outlive a killed holder do not keep it.
The file holds the holder's pid, host and command for the error message of whoever finds it taken.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from pathlib import Path

from hypera_nnunet.errors import HyperaError

LOCK_NAME = ".lock"


class FolderLock:
    """:param folder: the folder to lock (created if missing).
    :param what: what the folder is, for the error message (e.g. "this fold's HYPERA folder")."""

    def __init__(self, folder: str | os.PathLike, what: str = "this folder") -> None:
        self.folder = Path(folder)
        self.what = what
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._fork_hook = False

    def holder(self) -> str:
        """What the lock file says about its holder ('unknown' if it says nothing)."""
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def acquire(self) -> FolderLock:
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HyperaError(f"{self.folder} is in use: {self.what} is locked by {self.holder()} "
                              f"(lock file {self.path}); wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv)[:200]})\n".encode())
        self._fd = fd
        if not self._fork_hook:  # forked children (nnU-Net's augmentation workers) must not keep the lock alive
            os.register_at_fork(after_in_child=self._close_in_child)
            self._fork_hook = True
        return self

    def _close_in_child(self) -> None:
        """In a forked child: drop this process's copy of the descriptor, without unlocking (the parent's
        ``flock`` is on the same open file description, so ``LOCK_UN`` here would release it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
