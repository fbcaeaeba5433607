"""signals.py: the first stop signal is a request, the second stops at once; handlers come back.

Signals are raised with ``signal.raise_signal``, which runs the Python handler before it
returns, so each test knows exactly when its signal arrived.
"""

import signal
import threading

import pytest

from gluon_resnet.events import TrainingInterrupted
from gluon_resnet.signals import STOP_SIGNALS, StopSignals, signal_name


def _handlers():
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}


@pytest.fixture(autouse=True)
def caller_handlers():
    """The caller's own handlers, which only count: a signal StopSignals misses lands here
    (and fails the test) instead of ending pytest."""
    missed = []
    saved = {s: signal.signal(s, lambda signum, frame: missed.append(signum))
             for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield missed
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_the_names_are_the_ones_a_reader_typed_or_saw():
    assert [signal_name(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)] == [
        "Ctrl-C", "SIGTERM", "SIGHUP"]
    assert set(STOP_SIGNALS) == {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


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


def test_a_request_from_code_counts_as_the_first_signal():
    with StopSignals() as stop:
        stop.request(signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(TrainingInterrupted):
            stop.request()
    with stop:  # each use starts with no request
        assert not stop.requested


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
