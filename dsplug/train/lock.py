"""One process per run folder: an OS file lock held for the whole run.

``dsplug train`` (new run, ``--resume``, ``--resume-from``, ``--overwrite``) takes
:class:`RunLock` on its run folder before it looks at or changes anything in it. The lock is
``fcntl.flock`` (``msvcrt.locking`` on Windows) on ``RUN/.dsplug.lock``, so the OS releases it
when the process ends in any way, SIGKILL included. The file holds the holder's PID, host and
command for the message a second process prints. Where the file system has no locks (some
network mounts), the file itself is the lock and a leftover one is stale when its PID is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError"]

LOCK_NAME = ".dsplug.lock"

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import errno
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class RunLockedError(RuntimeError):
    """Another live process holds the run folder's lock."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError:
        return False
    return True


def _describe(holder: dict[str, Any]) -> str:
    pid = holder.get("pid", "?")
    host = holder.get("host")
    since = holder.get("since")
    when = f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if since else ""
    where = f" on {host}" if host and host != socket.gethostname() else ""
    command = holder.get("command")
    what = f" ({command})" if command else ""
    return f"pid {pid}{where}{when}{what}"


class RunLock:
    """The lock of one run folder; a context manager.

    Args:
        folder: the run folder (created if needed).
        command: what the holder runs, shown to a second process (e.g. ``"dsplug train ..."``).

    Raises:
        RunLockedError: on :meth:`acquire`, when another live process holds the folder; the
            message names it and what to do.

    Example:
        >>> with RunLock(tmp / "run", "dsplug train"):  # doctest: +SKIP
        ...     trainer.fit()
    """

    def __init__(self, folder: str | Path, command: str = "") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self._fd: int | None = None
        self._flock = True

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def _holder(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def _refuse(self, holder: dict[str, Any]) -> RunLockedError:
        return RunLockedError(
            f"run folder {self.folder} is in use by another dsplug train ({_describe(holder)}); "
            "wait for it to end (or stop it), or choose another --out."
        )

    def acquire(self) -> RunLock:
        """Take the lock (never waits).

        Raises:
            RunLockedError: another live process holds it.
        """
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(10):  # the holder may unlink the file between our open and our lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = _try_lock(fd)
            except OSError:  # no locks on this file system: the file's PID decides
                os.close(fd)
                return self._acquire_by_pid()
            if not locked:
                os.close(fd)
                raise self._refuse(self._holder())
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                self._write(fd)
                return self
            _unlock(fd)
            os.close(fd)
        raise RunLockedError(f"run folder {self.folder}: its lock keeps changing; try again.")

    def _acquire_by_pid(self) -> RunLock:
        self._flock = False
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = self._holder()
            pid = int(holder.get("pid", 0) or 0)
            same_host = holder.get("host") in (None, socket.gethostname())
            if not same_host or _pid_alive(pid):
                raise self._refuse(holder) from None
            self.path.unlink(missing_ok=True)  # stale: its process is gone
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self._fd = fd
        self._write(fd)
        return self

    def _write(self, fd: int) -> None:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
            "command": self.command,
        }
        data = json.dumps(holder).encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)

    def release(self) -> None:
        """Give the lock back and remove its file (a no-op when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):  # while still locked: no one holds the new one
            self.path.unlink(missing_ok=True)
        try:
            if self._flock:
                _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
