"""One process of a launched job on another host: what ``launch --hosts`` runs there over ssh.

``gluon-resnet launch --hosts`` sends this file's text as ``python -c TEXT
SPEC`` through ssh, so it imports nothing from gluon_resnet (it must not
import MXNet either: a scheduler or server would start its role in this
process).  ``SPEC`` is JSON: ``argv`` (the process to run), ``cwd`` and
``env`` (variables added to the host's own, whose ``DMLC_*`` are dropped).

It starts the process in a session of its own, copies the process's output
(standard error merged) to standard output, and obeys lines on standard
input: ``signal N`` sends signal N to the process, ``group N`` to its whole
process group.  End of input (the launcher closed it, or its ssh connection
is gone) stops the process group: SIGTERM, then SIGKILL after a grace
period.  The process dies with this one (Linux).  Two lines starting with
``MARK`` report to the launcher: ``pid N`` once started, ``exit S`` at the
end (``S`` as ``Popen.returncode``: negative for a signal).
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time

#: Lines of this script's own output start with it; everything else is the process's.
MARK = "\x1egluon-resnet-launch"
#: Seconds between SIGTERM and SIGKILL when the launcher is gone.
GRACE_SECONDS = 5.0


def _emit(text):
    try:
        sys.stdout.buffer.write(("%s %s\n" % (MARK, text)).encode())
        sys.stdout.buffer.flush()
    except OSError:  # the launcher is gone; the process is stopped anyway
        pass


def _die_with_parent():
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def _killpg(pid, signum):
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _obey(child):
    """Follow the launcher's lines; stop the process group when they end."""
    for line in sys.stdin:
        try:
            kind, number = line.split()
            signum = int(number)
        except ValueError:
            continue
        try:
            if kind == "signal":
                os.kill(child.pid, signum)
            elif kind == "group":
                os.killpg(child.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
    _killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    _killpg(child.pid, signal.SIGKILL)


def main(argv):
    spec = json.loads(argv[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMLC_") and k != "PORT"}
    env.update(spec["env"])
    child = subprocess.Popen(spec["argv"], cwd=spec["cwd"], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True, preexec_fn=_die_with_parent())
    _emit("pid %d" % child.pid)
    threading.Thread(target=_obey, args=(child,), daemon=True).start()
    ended = True
    for raw in iter(child.stdout.readline, b""):
        ended = raw.endswith(b"\n")
        try:
            sys.stdout.buffer.write(raw)
            sys.stdout.buffer.flush()
        except OSError:  # nobody reads any more: keep draining until the process ends
            pass
    status = child.wait()
    _killpg(child.pid, signal.SIGKILL)  # whatever the process left behind in its group
    if not ended:  # the marker must start a line
        try:
            sys.stdout.buffer.write(b"\n")
        except OSError:
            pass
    _emit("exit %d" % status)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
