"""Stop signals: finish the batch, save, and say how to resume.

``kill`` and ``timeout`` send SIGTERM, so do job schedulers when they preempt
and ``docker stop``; a closed terminal or ssh session sends SIGHUP; Ctrl-C
sends SIGINT.  While ``StopSignals`` is installed, the first of any of them
only records the request: the training loop stops after the batch it is
running, the callbacks save the state, and the command line exits with 128 +
the signal number (130, 143, 129), as a shell reports a process killed by
that signal.  A second signal stops at once (``TrainingInterrupted`` with
``immediate=True``), for a loop that hangs.
"""

import signal
import threading

from .events import TrainingInterrupted

__all__ = ["STOP_SIGNALS", "StopSignals", "signal_name"]

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
        another thread the manager does nothing either.

    Attributes
    ----------
    signum : int or None
        The first signal received, None while there was none.
    """

    def __init__(self, enabled=True):
        self.enabled = enabled
        self.signum = None
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

    def __enter__(self):
        self.signum = None
        if self.enabled and threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
        return False
