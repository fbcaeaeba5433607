"""The current edition's small counters: ``Timer`` and ``Accumulator`` (d2l 1.x's names).

``d2l.train_ch6`` and ``d2l.evaluate_accuracy_gpu`` sum their metrics in an
``Accumulator`` and time the batches with a ``Timer``; readers use both in
exercises.  These behave as d2l's do; gluon_resnet's own loop keeps its sums
on the device instead (``callbacks.Recorder``).
"""

import time

import numpy as np

from .arrays import scalar

__all__ = ["Timer", "Accumulator"]


class Timer:
    """Record several running times; starts when made (a monotonic clock: ``time.perf_counter``).

    ``start()`` starts a lap, ``stop()`` records it and returns its seconds;
    ``avg()``, ``sum()`` and ``cumsum()`` read the recorded laps.
    """

    def __init__(self):
        self.times = []
        self.start()

    def start(self):
        """Start a lap."""
        self.tik = time.perf_counter()

    def stop(self):
        """End the lap, record it and return its length in seconds."""
        self.times.append(time.perf_counter() - self.tik)
        return self.times[-1]

    def avg(self):
        """Mean lap time."""
        return sum(self.times) / len(self.times)

    def sum(self):
        """Total of the laps."""
        return sum(self.times)

    def cumsum(self):
        """Running totals of the laps, as a list."""
        return np.cumsum(self.times).tolist()


class Accumulator:
    """Running sums of ``n`` quantities, each added as a float.

    ``add(a, b, ...)`` adds one value per quantity (numbers or one-element
    arrays of either mode); ``acc[i]`` reads sum ``i``; ``reset()`` zeroes all.
    """

    def __init__(self, n):
        self.data = [0.0] * n

    def add(self, *args):
        """Add ``args[i]`` to sum ``i``; extra arguments are ignored, as in d2l."""
        self.data = [total + _number(value) for total, value in zip(self.data, args)]

    def reset(self):
        """Set every sum back to 0."""
        self.data = [0.0] * len(self.data)

    def __getitem__(self, index):
        return self.data[index]


def _number(value):
    """A number, or a one-element array of either mode (legacy ``NDArray`` refuses ``float``)."""
    return scalar(value) if hasattr(value, "asnumpy") else float(value)
