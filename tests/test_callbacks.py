"""The callbacks: a resumed epoch's progress bar starts where the run stopped."""

import re

import numpy as np
import pytest

from mxnet import gluon, init

from gluon_resnet.callbacks import OneCycleSchedule, ProgressBar
from gluon_resnet.data import load_data_fashion_mnist
from gluon_resnet.models import get_model
from gluon_resnet.training import Learner

from helpers import needs_data


@needs_data
def test_a_resumed_epochs_progress_bar_starts_at_the_resumed_position(capsys):
    train_iter, _ = load_data_fashion_mnist(50, limit=200)
    net = get_model("compact_resnet8_w32")
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    learner = Learner(net, train_iter, None, trainer, callbacks=[ProgressBar(enabled=True)])
    # Stopped after two of four batches (as a checkpoint's meta says).
    learner.restore({"epoch": 0, "batch": 2, "history": [], "partial": [200.0, 20.0, 100, 5.0]})
    learner.fit(1)
    # The bar draws at its start; later draws depend on tqdm's clock, so only the start is
    # certain: it must be the resumed position, and the bar must never show an earlier one.
    shown = re.findall(r"(\d+)/200", capsys.readouterr().err)
    assert shown[0] == "100" and not {"0", "50"} & set(shown), shown


def test_one_cycle_rises_then_falls():
    sched = OneCycleSchedule(1.0, warmup=0.25, div=10, final_div=1000)
    rates = [sched.rate(s, 100) for s in range(100)]
    peak = int(np.argmax(rates))
    assert rates[0] == pytest.approx(0.1) and rates[peak] == pytest.approx(1.0)
    assert peak == 25 and rates[-1] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(rates[:peak], rates[1:peak + 1]))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:]))
