"""The ``gluon-resnet`` command's entry point: stop signals are handled from its first line.

Importing ``gluon_resnet`` loads MXNet, which takes a second or two; the
command's own handlers (``gluon_resnet.signals``) exist only once that is
done.  This module lies outside the package so that the console script runs
it before any of that: during the import, a Ctrl-C, SIGTERM or SIGHUP ends the
command with one line and the status a shell reports for that signal (130,
143, 129), instead of a traceback from inside MXNet.  Nothing has been read
or written by then.  A signal this process inherited as ignored (``nohup``, a
script's background job) stays ignored, as during training.

``python -m gluon_resnet`` imports the package before any code of its own
runs, so there the first seconds keep Python's default behaviour.
"""

import signal
import sys

__all__ = ["main"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _StoppedWhileStarting(BaseException):
    """A stop signal arrived while the command was being imported."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _stop(signum, frame):
    raise _StoppedWhileStarting(signum)


def main(argv=None):
    """Run ``gluon-resnet`` (``argv``: its arguments, default ``sys.argv[1:]``); the exit status."""
    previous = {}
    for signum in _STOP_SIGNALS:
        if signal.getsignal(signum) != signal.SIG_IGN:  # nohup, background jobs
            previous[signum] = signal.signal(signum, _stop)
    try:
        try:
            from gluon_resnet.cli import main as command
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    except _StoppedWhileStarting as stopped:
        name = "Ctrl-C" if stopped.signum == signal.SIGINT else signal.Signals(stopped.signum).name
        print("\ngluon-resnet: stopped (%s) while starting, before anything was read or written; "
              "the same command starts again." % name, file=sys.stderr)
        return 128 + int(stopped.signum)
    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
