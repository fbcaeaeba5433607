"""Stop signals: finish the batch, save, and say how to resume.

``kill`` and ``timeout`` send SIGTERM, so do job schedulers when they preempt
and ``docker stop``; a closed terminal or ssh session sends SIGHUP; Ctrl-C
sends SIGINT.  While ``StopSignals`` is installed, the first of any of them
only records the request: the training loop stops after the batch it is
running, the callbacks save the state, and the command line exits with 128 +
the signal number (130, 143, 129), as a shell reports a process killed by
that signal.  A second signal stops at once (``TrainingInterrupted`` with
``immediate=True``), for a loop that hangs.

Before training starts (measuring the precision, loading the data, building
the network) there is no batch to finish and nothing to save, so there the
first signal stops at once (``StopSignals.at_once``).

A signal this process inherited as ignored stays ignored: ``nohup`` starts
a program with SIGHUP ignored so that it outlives a logout, and a
non-interactive shell starts its background jobs with SIGINT ignored.
"""

import contextlib
import signal
import threading

from ._testsignal import signal_at, signal_batch
from .events import Callback, TrainingInterrupted

__all__ = ["STOP_SIGNALS", "StopSignals", "signal_name", "SignalAtBatch", "hook_callbacks"]

#: The signals that stop training cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def signal_name(signum):
    """``'SIGTERM'`` for ``signal.SIGTERM`` (``'Ctrl-C'`` for SIGINT)."""
    if signum == signal.SIGINT:
        return "Ctrl-C"
    return signal.Signals(signum).name


class StopSignals:
    """A context manager that turns stop signals into a request to stop.

    Parameters
    ----------
    enabled : bool
        False leaves the handlers alone (a distributed worker that is not
        the lead).  Handlers can only be installed in the main thread; in
        another thread the manager does nothing either.  A signal that is
        ignored (``SIG_IGN``) when the manager is entered keeps being ignored.

    Attributes
    ----------
    signum : int or None
        The first signal received, None while there was none.
    at_once : bool
        While True the first signal raises ``TrainingInterrupted`` at once
        (see ``interruptible``), its message saying ``doing``.
    doing : str
        What the process is doing, for that message (``"while loading the data"``).
    """

    def __init__(self, enabled=True):
        self.enabled = enabled
        self.signum = None
        self.at_once = False
        self.doing = "before the first batch"
        self._previous = {}

    @property
    def requested(self):
        return self.signum is not None

    def request(self, signum=signal.SIGINT):
        """Ask for a stop as a signal would (for example from a callback)."""
        self._handle(signum, None)

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise TrainingInterrupted(
                "stopped at once by a second signal (%s); the last saved checkpoint, if any, "
                "is kept" % signal_name(signum), signum=signum, immediate=True)
        self.signum = signum
        if self.at_once:
            self._stop_now()

    def _stop_now(self):
        raise TrainingInterrupted("training interrupted (%s) %s" % (signal_name(self.signum),
                                                                     self.doing),
                                  signum=self.signum)

    @contextlib.contextmanager
    def interruptible(self):
        """Inside, a stop signal (or one received before) raises ``TrainingInterrupted`` at once."""
        self.at_once = True
        try:
            if self.signum is not None:
                self._stop_now()
            yield self
        finally:
            self.at_once = False

    def __enter__(self):
        self.signum = None
        if self.enabled and threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) != signal.SIG_IGN:  # nohup, background jobs
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def release(self):
        """Give the signals back their handlers from before (safe to call twice).

        A handler that someone else installed meanwhile (``SIG_IGN`` in a
        distributed worker) is left in place.
        """
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        self._previous = {}


class SignalAtBatch(Callback):
    """Test hook: send this process a stop signal before batch ``batch`` (1-based) of an epoch.

    Made by ``hook_callbacks`` from ``GLUON_RESNET_TEST_SIGNAL_AT``
    (see ``gluon_resnet._testsignal``).
    """

    def __init__(self, batch):
        self.batch = batch
        self.sent = False

    def before_batch(self, learner):
        if not self.sent and learner.batch + 1 == self.batch:
            self.sent = True
            signal_at("batch%d" % self.batch)


def hook_callbacks():
    """``[SignalAtBatch(n)]`` when the test hook asks for a batch, else ``[]``."""
    batch = signal_batch()
    return [] if batch is None else [SignalAtBatch(batch)]
