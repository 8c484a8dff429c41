"""One writer per output directory: an exclusive lock held for the writer's lifetime.

`acquire(dir)` takes an advisory `flock` on `<dir>/.lock` and writes the holder (pid, host, start time, command)
into it. The kernel drops the lock when the holder dies, so a lock left by a killed process (kill -9, OOM, node
reboot) never blocks the next writer; the holder line only serves the error message. Where `flock` is not
supported (some network filesystems) the file's pid/host decide: a holder on this host whose pid is gone is stale.

Output-dir locks are re-entrant within a process (a second `decontam` call from the same script); run-dir locks
are not (two in-process trainings into one run dir would interleave their writes).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.errors import LockedError

LOCK_NAME = ".lock"
_HELD: dict[str, DirLock] = {}  # resolved dir -> this process's lock on it


@dataclass
class DirLock:
    """A held lock; `release()` (or process exit) frees it."""

    dir: Path
    fd: int | None
    depth: int = 1
    info: dict = field(default_factory=dict)

    def release(self) -> None:
        self.depth -= 1
        if self.depth > 0:
            return
        _HELD.pop(str(self.dir.resolve()), None)
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None
        else:
            (self.dir / LOCK_NAME).unlink(missing_ok=True)

    def __enter__(self) -> DirLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _holder_info() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300]}


def read_holder(directory: str | Path) -> dict:
    """The holder recorded in `<dir>/.lock` ({} when none or unreadable)."""
    try:
        return json.loads((Path(directory) / LOCK_NAME).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def describe(holder: dict) -> str:
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')} ({holder.get('command')})"


def acquire(directory: str | Path, what: str = "output dir", reentrant: bool = True) -> DirLock:
    """Lock `directory` (created if missing) for this process, or raise LockedError naming the holder.

    `reentrant=False`: a second acquire in this same process is refused too (two in-process trainings, e.g. web UI
    jobs, must not share a run dir)."""
    d = Path(directory)
    key = str(d.resolve())
    if key in _HELD:
        if not reentrant:
            raise _busy(d, what)
        _HELD[key].depth += 1
        return _HELD[key]
    d.mkdir(parents=True, exist_ok=True)
    path = d / LOCK_NAME
    info = _holder_info()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # no flock (Windows): fall back to the pid/host in the file
        os.close(fd)
        return _acquire_by_pid(d, key, info, what)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise _busy(d, what) from None
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # filesystem without flock
            return _acquire_by_pid(d, key, info, what)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    lock = _HELD[key] = DirLock(d, fd, info=info)
    return lock


def _busy(d: Path, what: str) -> LockedError:
    return LockedError(f"{what} {d} is in use by {describe(read_holder(d))}",
                       hint="wait for it to finish, stop it, or choose another output name")


def _acquire_by_pid(d: Path, key: str, info: dict, what: str) -> DirLock:
    path = d / LOCK_NAME
    holder = read_holder(d)
    if holder and not _is_stale(holder):
        raise _busy(d, what)
    tmp = path.with_name(f"{LOCK_NAME}.{os.getpid()}")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    os.replace(tmp, path)
    if read_holder(d).get("pid") != info["pid"]:  # lost a race with another writer
        raise _busy(d, what)
    lock = _HELD[key] = DirLock(d, None, info=info)
    return lock


def _is_stale(holder: dict) -> bool:
    """A holder on this host whose process is gone. Holders on other hosts are trusted (cannot be checked)."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, TypeError):
        return False
    return False


def release(directory: str | Path) -> None:
    """Release this process's lock on `directory`, if it holds one."""
    lock = _HELD.get(str(Path(directory).resolve()))
    if lock is not None:
        lock.release()
