"""meters.py: Accumulator and Timer give what d2l's (``d2l==1.0.3``) give."""

import mxnet as mx
from mxnet import npx

from d2l import mxnet as d2l

from gluon_resnet import Accumulator, Timer


def test_accumulator_sums_as_d2l(numpy_mode):
    ours, theirs = Accumulator(3), d2l.Accumulator(3)
    steps = [(1, 2.5, mx.np.array(3.0)), (mx.np.array([0.25]), 4, 1), (0.5, 0.5, 0.5, 99)]
    for args in steps:
        ours.add(*args)
        theirs.add(*args)
        assert ours.data == theirs.data and [ours[i] for i in range(3)] == theirs.data
    assert ours[0:2] == theirs[0:2]
    ours.reset()
    theirs.reset()
    assert ours.data == theirs.data == [0.0, 0.0, 0.0]
    npx.reset_np()
    ours.add(mx.nd.array([2.0]), 1, 0)  # legacy arrays too, which d2l's cannot take
    assert ours.data == [2.0, 1.0, 0.0]


def test_timer_times_as_d2l(monkeypatch):
    import types

    import gluon_resnet.meters as meters

    clock = iter([10.0, 10.5, 11.0, 13.0, 20.0, 20.25] * 2)
    fake = types.SimpleNamespace(time=lambda: next(clock), perf_counter=lambda: next(clock))
    monkeypatch.setattr(d2l, "time", fake)  # both read this clock, nothing else does
    monkeypatch.setattr(meters, "time", fake)
    results = []
    for make in (d2l.Timer, Timer):
        timer = make()  # starts when made: 10.0
        laps = [timer.stop()]  # 0.5
        timer.start()  # 11.0
        laps.append(timer.stop())  # 2.0
        timer.start()  # 20.0
        laps.append(timer.stop())  # 0.25
        results.append((laps, timer.times, timer.avg(), timer.sum(), timer.cumsum()))
    assert results[0] == results[1]
    assert results[1][0] == [0.5, 2.0, 0.25] and results[1][4] == [0.5, 2.5, 2.75]
