"""A test hook: a process that sends itself a stop signal at a named point of a run.

``GLUON_RESNET_TEST_SIGNAL_AT=POINT[:SIGNAL]`` (for tests only) makes the
process send itself ``SIGNAL`` (``SIGINT``, ``SIGTERM`` or ``SIGHUP``;
default ``SIGINT``) when it reaches ``POINT``: ``import`` (MXNet is loaded,
the rest of the package not yet), ``start`` (the run folder is
locked), ``data`` (before loading the data), ``measure`` (``auto``'s
measuring processes have started), ``network`` (before building the
network), ``batchN`` (before batch N of the first epoch trained; ``batch``
is ``batch1``).  The signal is delivered as one from a terminal or ``kill``
would be, so a test can stop a run at a known point instead of after a
sleep.  Without the variable nothing happens.

This module imports nothing of gluon_resnet's, so the lowest layers can call it.
"""

import os
import signal

__all__ = ["TEST_SIGNAL_ENV", "signal_at", "signal_batch"]

#: The environment variable of the hook.
TEST_SIGNAL_ENV = "GLUON_RESNET_TEST_SIGNAL_AT"


def _parse():
    """``(point, signal number)`` asked for, or None."""
    value = os.environ.get(TEST_SIGNAL_ENV, "")
    if not value:
        return None
    point, _, name = value.partition(":")
    point = "batch1" if point.strip() == "batch" else point.strip()
    return point, int(getattr(signal, (name or "SIGINT").strip().upper()))


def signal_at(point):
    """Send this process the hook's signal when ``point`` is the one asked for."""
    asked = _parse()
    if asked is not None and asked[0] == point:
        os.kill(os.getpid(), asked[1])


def signal_batch():
    """The batch (1-based) before which the hook signals, or None."""
    asked = _parse()
    if asked is None or not asked[0].startswith("batch"):
        return None
    return int(asked[0][len("batch"):])
