"""One run per folder: a lock held in the run folder for the life of a training.

``RunLock(folder)`` creates ``folder/run.lock`` and holds an exclusive
``flock`` on it until ``release`` (or the ``with`` block ends); the file
names the holder (process id, host, start time).  A second training into the
folder is refused at once with those three.  The kernel drops the lock when
its process dies, even by SIGKILL, so a lock file left by a killed run is
free to take: it is taken over with a notice naming the process that left it.
A clean end removes the file.  ``flock`` works across machines on NFS (Linux
emulates it with POSIX locks there).
"""

import datetime
import errno
import fcntl
import json
import os
import socket
import sys

from .errors import RunError

__all__ = ["RunLock", "FolderInUseError", "LOCK_NAME"]

#: The lock file's name in a run folder.
LOCK_NAME = "run.lock"


class FolderInUseError(RunError):
    """Another training holds the run folder's lock."""


def _describe(holder):
    """``process 1234 on host, started YYYY-MM-DD HH:MM:SS`` (what a lock file says)."""
    if not isinstance(holder, dict) or not holder:
        return "an unknown process"
    return "process %s on %s, started %s" % (holder.get("pid", "?"), holder.get("host", "?"),
                                              holder.get("started", "?"))


def _read(fd):
    """The holder a lock file names (a dict), or None when it is empty or unreadable."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return {}


def _notice(line):
    print(line, file=sys.stderr, flush=True)


class RunLock:
    """The lock of run folder ``folder`` (a context manager; created when acquired).

    Parameters
    ----------
    folder : str
        The run folder; created if missing (and removed again on release if
        it is still empty).
    notice : callable, default: print to standard error
        Gets the one line that says a lock left by a dead run was taken over.

    Attributes
    ----------
    path : str
        ``folder/run.lock``.
    taken_over : dict or None
        What the lock file said when this process took it over from a run
        that had died (pid, host, started), None otherwise.
    """

    def __init__(self, folder, notice=_notice):
        self.folder, self.notice = folder, notice
        self.path = os.path.join(folder, LOCK_NAME)
        self.taken_over = None
        self._fd, self._created = None, False

    def acquire(self):
        """Take the lock, or raise ``FolderInUseError`` naming the process that holds it."""
        if self._fd is not None:
            return self
        self._created = not os.path.isdir(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise RunError("cannot lock the run folder %s (%s): choose a run folder on "
                                   "a local disk" % (self.folder, exc.strerror)) from None
                raise FolderInUseError(
                    "run folder %s is in use by another training (%s); wait for it to end or "
                    "stop it, or choose another --out" % (self.folder, _describe(holder))) \
                    from None
            # The holder before us may have removed the file after we opened it: then our
            # lock is on a file nobody else will see, so start again with the new one.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read(fd)
        if previous is not None:
            self.taken_over = previous
            self.notice("note: took over the lock of run folder %s from %s, which ended "
                        "without releasing it" % (self.folder, _describe(previous)))
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self):
        """Remove the lock file and let the lock go (safe to call twice)."""
        if self._fd is None:
            return
        try:
            os.remove(self.path)
        except OSError:
            pass  # a folder gone read-only: the next run takes the file over
        os.close(self._fd)  # closing drops the flock
        self._fd = None
        if self._created:  # a run refused before it wrote anything leaves no empty folder
            try:
                os.rmdir(self.folder)
            except OSError:
                pass

    @property
    def held(self):
        return self._fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
