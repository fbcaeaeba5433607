"""signals.py and stop signals in a run: the first signal is a request, the second stops at
once, handlers come back; a clean end at every point of a run, and ignored signals left ignored.

Signals are raised with ``signal.raise_signal``, which runs the Python handler before it
returns, so each unit test knows exactly when its signal arrived.  The runs stop themselves
at a known point through the test hook ``GLUON_RESNET_TEST_SIGNAL_AT``
(``gluon_resnet._testsignal``), never after a sleep.  Each ``gluon-resnet train`` here starts
with the signal dispositions a terminal gives (default), unless the test means to start it as
``nohup`` or a background job would (ignored).
"""

import hashlib
import os
import signal
import subprocess
import sys
import threading

import pytest

from gluon_resnet import signals
from gluon_resnet.events import TrainingInterrupted
from gluon_resnet.signals import STOP_SIGNALS, StopSignals, signal_name

from helpers import needs_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _handlers():
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}


@pytest.fixture
def caller_handlers():
    """The caller's own handlers, which only count: a signal StopSignals misses lands here
    (and fails the test) instead of ending pytest."""
    missed = []
    saved = {s: signal.signal(s, lambda signum, frame: missed.append(signum))
             for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield missed
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.mark.usefixtures("caller_handlers")
def test_the_names_are_the_ones_a_reader_typed_or_saw():
    assert [signal_name(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)] == [
        "Ctrl-C", "SIGTERM", "SIGHUP"]
    assert set(STOP_SIGNALS) == {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@pytest.mark.usefixtures("caller_handlers")
@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_the_first_signal_is_recorded_and_a_second_stops_at_once(first, caller_handlers):
    before = _handlers()
    with StopSignals() as stop:
        assert not stop.requested
        signal.raise_signal(first)
        assert stop.requested and stop.signum == first  # recorded, nothing raised
        with pytest.raises(TrainingInterrupted, match=r"second signal \(SIGTERM\)") as caught:
            signal.raise_signal(signal.SIGTERM)
        assert caught.value.immediate and caught.value.signum == signal.SIGTERM
    assert _handlers() == before  # the caller's handlers are back
    signal.raise_signal(first)
    assert caller_handlers == [first]  # and they get the next signal


@pytest.mark.usefixtures("caller_handlers")
def test_a_request_from_code_counts_as_the_first_signal():
    with StopSignals() as stop:
        stop.request(signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(TrainingInterrupted):
            stop.request()
    with stop:  # each use starts with no request
        assert not stop.requested


@pytest.mark.usefixtures("caller_handlers")
def test_disabled_or_outside_the_main_thread_the_handlers_are_left_alone():
    before = _handlers()
    with StopSignals(enabled=False):
        assert _handlers() == before
    seen = []

    def other_thread():
        with StopSignals():
            seen.append(_handlers())

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert seen == [before]


@pytest.fixture
def dispositions():
    """Put the stop signals' handlers back as they were, whatever a test did to them."""
    saved = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_an_ignored_signal_stays_ignored(dispositions):
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts a program
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job of a script starts
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with StopSignals() as stop:
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == stop._handle
        os.kill(os.getpid(), signal.SIGHUP)  # ignored: nothing recorded
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
    assert [signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)] == [
        signal.SIG_IGN, signal.SIG_IGN, signal.SIG_DFL]


def test_before_training_a_signal_stops_at_once(dispositions):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)  # outside: only recorded ...
        assert stop.signum == signal.SIGTERM
        stop.doing = "while loading the data"
        with pytest.raises(TrainingInterrupted) as raised:
            with stop.interruptible():  # ... and raised on the way in
                pass
    assert str(raised.value) == "training interrupted (SIGTERM) while loading the data"
    assert raised.value.exit_status == 143 and raised.value.checkpoint is None
    with StopSignals() as stop:
        stop.doing = "while building the network"
        with pytest.raises(TrainingInterrupted) as raised:
            with stop.interruptible():
                os.kill(os.getpid(), signal.SIGHUP)
                raise AssertionError("not stopped")
        assert not stop.at_once
    assert raised.value.exit_status == 129 and "(SIGHUP) while building" in str(raised.value)


def test_release_leaves_a_handler_installed_meanwhile(dispositions):
    """A distributed worker other than the lead ignores Ctrl-C once it knows its rank."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with StopSignals() as stop:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop.release()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) != stop._handle


def test_the_hook_sends_nothing_without_the_variable(monkeypatch):
    monkeypatch.delenv("GLUON_RESNET_TEST_SIGNAL_AT", raising=False)
    assert signals.hook_callbacks() == []
    monkeypatch.setenv("GLUON_RESNET_TEST_SIGNAL_AT", "batch:SIGHUP")
    assert [cb.batch for cb in signals.hook_callbacks()] == [1]
    monkeypatch.setenv("GLUON_RESNET_TEST_SIGNAL_AT", "batch3")
    assert [cb.batch for cb in signals.hook_callbacks()] == [3]


# --- whole runs -------------------------------------------------------------------------------

TRAIN = ["train", "--model", "compact_resnet8", "--no-resize", "--limit", "200",
         "--batch-size", "50", "--epochs", "1", "--no-progress", "--precision", "fp32"]
#: The measuring processes inherit the environment: this marks them for the orphan check.
MARK = "GLUON_RESNET_SIGNAL_TEST_MARK"


def _run(args, at=None, ignore=(), tmp_path=None, program=None, **more_env):
    """``gluon-resnet args`` in a new process whose stop signals are default, but ``ignore``."""
    env = dict(os.environ, PYTHONPATH=ROOT, XDG_CACHE_HOME=str(tmp_path / "cache"), **more_env)
    env[MARK] = str(tmp_path)
    env.pop("GLUON_RESNET_TEST_SIGNAL_AT", None)
    if at:
        env["GLUON_RESNET_TEST_SIGNAL_AT"] = at

    def dispositions():
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN if s in ignore else signal.SIG_DFL)

    code = program or "import sys; from gluon_resnet.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code] + args, env=env, capture_output=True,
                          text=True, timeout=600, preexec_fn=dispositions)


def _marked_processes(tmp_path):
    """Processes still alive that were started by a run of this test (the measuring ones)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                if ("%s=%s" % (MARK, tmp_path)).encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            pass  # gone, or not ours
    return found


def _stopped_cleanly(done, status, out):
    assert done.returncode == status, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr
    assert not os.path.exists(os.path.join(out, "run.lock"))


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("at, status, doing", [
    ("start:SIGTERM", 143, "while starting"),
    ("data", 130, "while loading the data"),
    ("network:SIGHUP", 129, "while building the network")])
def test_a_signal_before_training_ends_the_run_with_a_message(tmp_path, at, status, doing):
    out = str(tmp_path / "run")
    done = _run(TRAIN + ["--out", out], at, tmp_path=tmp_path)
    _stopped_cleanly(done, status, out)
    name = {130: "Ctrl-C", 143: "SIGTERM", 129: "SIGHUP"}[status]
    assert done.stderr.strip().splitlines() == [
        "training interrupted (%s) %s." % (name, doing),
        "Nothing was saved yet: the same command starts the run again."]
    assert not os.path.exists(os.path.join(out, "checkpoint.ckpt"))


@needs_data
@pytest.mark.slow
def test_a_signal_while_measuring_ends_the_measuring_processes(tmp_path):
    """bf16 is made to look available, so that auto measures here (a run long enough: many
    epochs); the signal comes once both measuring processes run."""
    out = str(tmp_path / "run")
    program = ("import sys; import gluon_resnet.precision as p; p.bf16_available = lambda: True;"
               "from gluon_resnet.cli import main; sys.exit(main(sys.argv[1:]))")
    args = [a for a in TRAIN if a not in ("--precision", "fp32")]
    args[args.index("--epochs") + 1] = "100000"
    done = _run(args + ["--out", out], "measure:SIGTERM", tmp_path=tmp_path, program=program,
                GLUON_RESNET_AUTO_MEASURE="1")
    _stopped_cleanly(done, 143, out)
    assert "training interrupted (SIGTERM) while measuring the precision." in done.stderr
    assert "Nothing was saved yet" in done.stderr
    assert _marked_processes(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("name, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_while_the_precision_command_measures(tmp_path, name, status):
    """The measuring processes end with the command (a default SIGTERM would leave them to
    finish their step)."""
    program = ("import sys; import gluon_resnet.precision as p; p.bf16_available = lambda: True;"
               "from gluon_resnet.cli import main; sys.exit(main(sys.argv[1:]))")
    done = _run(["precision", "--measure", "--model", "compact_resnet8", "--size", "28",
                 "--batch-size", "16"], "measure:" + name, tmp_path=tmp_path, program=program)
    assert done.returncode == status, done.stderr
    assert done.stderr.strip() == "gluon-resnet precision: stopped (%s)." % (
        "Ctrl-C" if name == "SIGINT" else name), done.stderr
    assert _marked_processes(tmp_path) == []


#: What the installed ``gluon-resnet`` script runs (test_package checks the entry point).
COMMAND = "import sys; from gluon_resnet_command import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.slow
@pytest.mark.parametrize("name, status", [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_signal_while_the_command_imports_mxnet(tmp_path, name, status):
    out = tmp_path / "run"
    done = _run(TRAIN + ["--out", str(out)], "import:" + name, tmp_path=tmp_path, program=COMMAND)
    assert done.returncode == status, done.stderr
    assert done.stderr.strip() == (
        "gluon-resnet: stopped (%s) while starting, before anything was read or written; the "
        "same command starts again." % ("Ctrl-C" if name == "SIGINT" else name)), done.stderr
    assert not out.exists()


@pytest.mark.slow
def test_an_ignored_signal_while_the_command_imports_mxnet_stays_ignored(tmp_path):
    done = _run(["models"], "import:SIGHUP", ignore=(signal.SIGHUP,), tmp_path=tmp_path,
                program=COMMAND)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "chapter_resnet18" in done.stdout


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@needs_data
@pytest.mark.slow
def test_the_first_batch_saves_and_a_resume_stopped_early_keeps_the_checkpoint(tmp_path):
    out = str(tmp_path / "run")
    done = _run(TRAIN + ["--out", out], "batch1", tmp_path=tmp_path)
    _stopped_cleanly(done, 130, out)
    checkpoint = os.path.join(out, "checkpoint.ckpt")
    assert "training interrupted (Ctrl-C) in epoch 1 after batch 1." in done.stderr
    assert "Nothing is lost: the state is saved in %s." % checkpoint in done.stderr
    before = _digest(checkpoint)
    done = _run(["train", "--resume", out, "--no-progress"], "data:SIGHUP", tmp_path=tmp_path)
    _stopped_cleanly(done, 129, out)
    assert "training interrupted (SIGHUP) while loading the data." in done.stderr
    assert "Nothing is lost: the state is saved in %s." % checkpoint in done.stderr
    assert "train --resume %s" % checkpoint in done.stderr
    assert _digest(checkpoint) == before


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("name, status", [("SIGHUP", 129), ("SIGINT", 130)])
def test_an_ignored_signal_does_not_stop_training(tmp_path, name, status):
    """Started as ``nohup`` does (SIGHUP ignored) or as a script's background job (SIGINT
    ignored), the run trains through the signal; started from a terminal, it stops."""
    signum = getattr(signal, name)
    out = str(tmp_path / "ignored")
    done = _run(TRAIN + ["--out", out], "batch2:" + name, ignore=(signum,), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "interrupted" not in done.stderr and "epoch 1," in done.stdout
    out = str(tmp_path / "default")
    done = _run(TRAIN + ["--out", out], "batch2:" + name, tmp_path=tmp_path)
    _stopped_cleanly(done, status, out)
    assert "in epoch 1 after batch 2." in done.stderr
