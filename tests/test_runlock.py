"""The run folder's lock: a folder another process holds is refused, a dead holder's lock is
taken over with a notice."""

import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from gluon_resnet.cli import main


HOLDER = """
    import fcntl, json, os, sys

    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": "elsewhere",
                             "started": "2026-11-30 09:00:00"}).encode())
    print("locked", flush=True)
    sys.stdin.read()  # holds the lock until the test closes standard input
"""


def test_a_folder_locked_by_another_process_is_refused_before_anything_is_written(tmp_path,
                                                                                   capsys):
    out = tmp_path / "busy"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER),
                               str(out / "run.lock")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert main(["train", "--out", str(out), "--no-resize", "--limit", "100",
                     "--model", "compact_resnet8_w32", "--precision", "fp32"]) == 2
        err = capsys.readouterr().err
        assert "is in use by another training (process %d on elsewhere, started " \
               "2026-11-30 09:00:00)" % holder.pid in err
        assert os.listdir(out) == ["run.lock"]  # no config.json, nothing else
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_notice(tmp_path):
    from gluon_resnet.runlock import RunLock

    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no process
    lock_file = tmp_path / "run.lock"
    lock_file.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                     "started": "2026-11-30 09:00:00"}))
    notices = []
    with RunLock(str(tmp_path), notice=notices.append) as lock:
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
        assert lock.taken_over["pid"] == dead.pid
    assert notices == ["note: took over the lock of run folder %s from process %d on %s, "
                       "started 2026-11-30 09:00:00, which ended without releasing it"
                       % (tmp_path, dead.pid, socket.gethostname())]
    assert not lock_file.exists()


class _OtherProcess:
    """``action()`` run in a forked process, which reports a line and then waits until
    ``finish`` (so that whatever it holds stays held until then).

    A fork, not a new interpreter: the child runs only the standard library and
    ``gluon_resnet.runlock`` (already imported), and leaves with ``os._exit``.
    """

    def __init__(self, action):
        report, self._report = os.pipe()
        self._go, go = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child
            os.close(report)
            os.close(go)
            try:
                line = action()
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                line = "%s: %s" % (type(exc).__name__, exc)
            os.write(self._report, line.encode() + b"\n")
            os.read(self._go, 1)  # until the test closes its end
            os._exit(0)
        os.close(self._report)
        os.close(self._go)
        self._go = go
        with os.fdopen(report) as f:
            self.line = f.readline().rstrip("\n")

    def finish(self):
        os.close(self._go)
        os.waitpid(self.pid, 0)


def test_a_folder_another_run_holds_is_refused_and_free_once_it_ends(tmp_path):
    from gluon_resnet.runlock import FolderInUseError, RunLock

    def hold():
        RunLock(str(tmp_path)).acquire()  # released when the process ends
        return "locked"

    other = _OtherProcess(hold)
    try:
        assert other.line == "locked"
        with pytest.raises(FolderInUseError, match=r"in use by another training \(process %d "
                                                   % other.pid):
            RunLock(str(tmp_path)).acquire()
    finally:
        other.finish()
    notices = []
    with RunLock(str(tmp_path), notice=notices.append) as lock:
        assert lock.held and lock.taken_over["pid"] == other.pid  # it ended without releasing


def test_a_held_run_folder_gives_no_other_process_any_lock(tmp_path):
    from gluon_resnet.runlock import RunLock

    def try_locks():
        fd = os.open(str(tmp_path / "run.lock"), os.O_RDWR)
        got = []
        for name in ("LOCK_SH", "LOCK_EX"):
            try:
                fcntl.flock(fd, getattr(fcntl, name) | fcntl.LOCK_NB)
                got.append(name)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                pass
        return "got %s" % (" ".join(got) or "none")

    with RunLock(str(tmp_path)):
        other = _OtherProcess(try_locks)
        other.finish()
        assert other.line == "got none"  # not even a reader's (shared) lock
