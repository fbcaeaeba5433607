"""The callbacks: a resumed epoch's progress bar starts where the run stopped."""

import re

from mxnet import gluon, init

from gluon_resnet.callbacks import ProgressBar
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
