"""The run folder's lock: a folder another process holds is refused, a dead holder's lock is
taken over with a notice."""

import json
import os
import socket
import subprocess
import sys
import textwrap

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
