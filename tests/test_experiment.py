"""A run's builders: none changes the configuration it is given; each file has one writer."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

import mxnet as mx

from gluon_resnet import experiment
from gluon_resnet.config import RECIPES, TrainConfig, recipe_config
from gluon_resnet.data import DataDescription
from gluon_resnet.distributed import Job
from gluon_resnet.events import Callback
from gluon_resnet.experiment import (build_callbacks, build_data, build_loss, build_network,
                                     build_trainer, run_training, settle_config,
                                     write_config)
from gluon_resnet.models import get_model

from helpers import DATA_DIR, TINY, needs_data, write_fashion_folder


@needs_data
def test_the_folder_and_the_job_settle_a_new_config(tmp_path):
    root = str(tmp_path / "images")  # three classes of Fashion-MNIST
    write_fashion_folder(root, train=30, test=10)
    for split in ("train", "test"):
        for name in sorted(os.listdir(os.path.join(root, split)))[3:]:
            shutil.rmtree(os.path.join(root, split, name))
    config = TrainConfig(data=root, model="compact_resnet8", resize=None, batch_size=3,
                         label_smoothing=0.1)
    train_iter, _ = build_data(config, quiet=True)
    settled = settle_config(config, Job(kvstore="local"), train_iter)
    assert (settled.num_classes, settled.kvstore) == (3, "local")
    assert dataclasses.replace(settled, num_classes=10, kvstore="device") == config
    # What is built from the settled config has three classes.
    X, y = next(iter(train_iter))
    assert build_network(settled, mx.cpu())(X).shape == (3, 3)
    assert build_loss(settled).num_classes == 3
    # Fashion-MNIST: the configured number of classes stays.
    assert settle_config(TrainConfig(num_classes=7), Job(), None).num_classes == 7


def test_config_json_is_written_by_write_config_alone(tmp_path):
    stored = {"classes": ["a", "b"], "channels": 1, "size": [8, 8], "mean": None, "std": None}
    config, data = TrainConfig(), DataDescription.from_dict(stored)
    callbacks = build_callbacks(config, Job(), str(tmp_path), "fp32", progress=False,
                                quiet=True, data=data)
    assert callbacks and os.listdir(tmp_path) == []
    write_config(str(tmp_path), config, "bf16", Job(num_workers=2), data)
    assert os.listdir(tmp_path) == ["config.json"]
    with open(tmp_path / "config.json") as f:
        assert json.load(f) == dict(config.to_dict(), precision_used="bf16", workers=2,
                                    data=stored)



@needs_data
@pytest.mark.slow
def test_a_run_builds_its_network_once(tmp_path, monkeypatch):
    built = []

    def counting_get_model(name, **kwargs):
        built.append(name)
        return get_model(name, **kwargs)

    monkeypatch.setattr(experiment, "get_model", counting_get_model)
    history, _ = run_training(TrainConfig(**TINY), out=str(tmp_path / "run"), quiet=True,
                              progress=False)
    assert len(history) == TINY["epochs"]
    # fp32: the memory check and the training share the one network.
    assert built == [TINY["model"]]
# ---------------------------------------------------------------------------
# The optimizer a configuration builds: its updates, computed here by hand
# ---------------------------------------------------------------------------

class _HandOptimizer:
    """The updates of MXNet's optimizers as their documentation defines them, in float64.

    ``g`` is the batch's summed gradient divided by the batch size (``Trainer.step``'s
    rescaling) plus ``wd`` times the weight, for every optimizer:

    - sgd: ``v = momentum * v - lr * g``; ``w = w + v`` (no ``v`` without momentum)
    - nag: ``v = momentum * v - lr * g``; ``w = w + momentum * v - lr * g``
      (MXNet's ``nag_mom_update``, in place: ``g`` of ``v`` is taken at the new ``w``)
    - adam: ``m = b1 m + (1 - b1) g``, ``s = b2 s + (1 - b2) g**2``;
      ``w = w - lr sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(s) + eps)``
    """

    def __init__(self, optimizer, lr, momentum, wd):
        self.optimizer, self.lr, self.momentum, self.wd = optimizer, lr, momentum, wd
        self.state, self.t = {}, 0

    def step(self, weights, grads, batch_size, lr=None):
        lr = self.lr if lr is None else lr
        self.t += 1
        new = {}
        for name, w in weights.items():
            w = w.astype(np.float64)
            g = grads[name].astype(np.float64) / batch_size + self.wd * w
            if self.optimizer == "sgd":
                v = self.momentum * self.state.get(name, 0.0) - lr * g
                self.state[name] = v
                new[name] = w + v
            elif self.optimizer == "nag":
                v = self.momentum * self.state.get(name, 0.0)
                new[name] = w + self.momentum * (v - lr * g) - lr * g
                # MXNet's kernel updates the weight in place first, and the momentum with it.
                g = grads[name].astype(np.float64) / batch_size + self.wd * new[name]
                self.state[name] = v - lr * g
            else:
                b1, b2, eps = 0.9, 0.999, 1e-8
                m, s = self.state.get(name, (0.0, 0.0))
                m, s = b1 * m + (1 - b1) * g, b2 * s + (1 - b2) * g * g
                self.state[name] = (m, s)
                rate = lr * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
                new[name] = w - rate * m / (np.sqrt(s) + eps)
        return new


def _dense_net():
    from mxnet.gluon import nn

    net = nn.Dense(3, in_units=4, prefix="dense_")
    net.initialize()
    rng = np.random.RandomState(5)
    net.weight.set_data(mx.nd.array(rng.normal(size=(3, 4))))
    net.bias.set_data(mx.nd.array(rng.normal(size=(3,))))
    return net


@pytest.mark.parametrize("optimizer, momentum, wd", [
    ("sgd", 0.0, 0.0),  # the chapter's recipe
    ("sgd", 0.9, 0.0), ("sgd", 0.9, 0.05), ("sgd", 0.0, 0.05),
    ("nag", 0.9, 0.05),  # the fast and best recipes' optimizer (their wd is smaller)
    ("nag", 0.9, 0.0), ("nag", 0.0, 0.05),
    ("adam", 0.0, 0.0), ("adam", 0.0, 0.05)])
def test_build_trainer_updates_as_the_configured_optimizer_is_defined(optimizer, momentum, wd):
    config = TrainConfig(optimizer=optimizer, momentum=momentum, wd=wd, lr=0.3)
    net = _dense_net()
    trainer = build_trainer(config, net)
    hand = _HandOptimizer(optimizer, 0.3, momentum, wd)
    params = {"weight": net.weight, "bias": net.bias}
    rng = np.random.RandomState(6)
    loss = build_loss(config)
    for _ in range(3):  # the third step: momentum and Adam's moments have a history
        X = mx.nd.array(rng.normal(size=(5, 4)))
        y = mx.nd.array(rng.randint(0, 3, size=5))
        before = {k: p.data().asnumpy() for k, p in params.items()}
        with mx.autograd.record():
            total = loss(net(X), y).sum()
        total.backward()
        grads = {k: p.grad().asnumpy() for k, p in params.items()}
        trainer.step(5)
        expected = hand.step(before, grads, 5)
        for k, p in params.items():
            np.testing.assert_allclose(p.data().asnumpy(), expected[k], rtol=1e-5, atol=1e-5,
                                       err_msg=k)
    # The optimizer's own momentum is the one computed here (sgd, nag).
    if momentum:
        states = trainer._updaters[0].states
        for i, p in enumerate(trainer._params):
            np.testing.assert_allclose(states[i].asnumpy(), hand.state[p.name[len("dense_"):]],
                                       rtol=1e-5, atol=1e-6, err_msg=p.name)


def test_build_loss_smooths_the_labels_the_config_says():
    scores = np.random.RandomState(7).normal(size=(4, 10))
    labels = np.array([0, 3, 9, 3])
    logp = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    for smoothing in (0.0, 0.1):
        target = np.full((4, 10), smoothing / 10)
        target[np.arange(4), labels] += 1 - smoothing
        got = build_loss(TrainConfig(label_smoothing=smoothing))(mx.nd.array(scores),
                                                                 mx.nd.array(labels))
        np.testing.assert_allclose(got.asnumpy(), -(target * logp).sum(axis=1), rtol=1e-5)


class _StepWatch(Callback):
    """Keeps, per training step, the trainer's rate, the batch size, and each trainable
    parameter's value before and after the step and its gradient."""

    def __init__(self):
        self.steps = []

    def _trainable(self, learner):
        return {p.name: p for p in learner.net.collect_params().values() if p.grad_req != "null"}

    def before_step(self, learner):
        if not self.steps:  # shapes are inferred at the first forward pass; inference changes
            with mx.autograd.predict_mode():  # no parameter
                learner.net(learner.X[:1])
        self.before = {k: p.data().asnumpy() for k, p in self._trainable(learner).items()}

    def after_step(self, learner):
        self.loss = learner.loss
        params = self._trainable(learner)
        self.steps.append({"lr": learner.trainer.learning_rate, "n": learner.batch_size,
                           "before": self.before,
                           "grad": {k: p.grad().asnumpy() for k, p in params.items()},
                           "after": {k: p.data().asnumpy() for k, p in params.items()},
                           "mults": {(p.lr_mult, p.wd_mult) for p in params.values()}})


def _one_cycle(step, total, peak_lr):
    """The one-cycle schedule as defined: linear from peak/10 at step 0 to the peak at a
    quarter of the steps, then linear down to peak/1000 at the last step."""
    return float(np.interp(step, [0, round(total / 4), total - 1],
                           [peak_lr / 10, peak_lr, peak_lr / 1000]))


#: What each recipe trains with.  The chapter's is the book's (d2l-zh 5.11: plain SGD at a
#: constant 0.05); the fast recipe's is its definition.
RECIPE_OPTIMIZERS = {
    "chapter": dict(optimizer="sgd", lr=0.05, momentum=0.0, wd=0.0, schedule="constant",
                    label_smoothing=0.0),
    "fast": {k: RECIPES["fast"][k] for k in ("optimizer", "lr", "momentum", "wd", "schedule",
                                             "label_smoothing")},
}


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECIPE_OPTIMIZERS))
def test_a_recipe_trains_with_its_optimizer_schedule_and_label_smoothing(tmp_path, name):
    recipe = RECIPE_OPTIMIZERS[name]
    # The recipe's optimizer on the small network at 28x28, a few steps.
    config = dataclasses.replace(
        recipe_config(name, limit=200, batch_size=50, epochs=1, precision="fp32",
                      data_root=DATA_DIR), model="compact_resnet8_w32", resize=None)
    watch = _StepWatch()
    run_training(config, out=str(tmp_path / "run"), quiet=True, progress=False,
                 callbacks=[watch])
    total = len(watch.steps)
    assert total == 4
    # The run's loss smooths the labels by the recipe's amount.
    scores = np.random.RandomState(8).normal(size=(3, 10))
    labels = np.array([2, 0, 7])
    target = np.full((3, 10), recipe["label_smoothing"] / 10)
    target[np.arange(3), labels] += 1 - recipe["label_smoothing"]
    logp = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(watch.loss(mx.nd.array(scores), mx.nd.array(labels)).asnumpy(),
                               -(target * logp).sum(axis=1), rtol=1e-5)
    # The rate of every step is the schedule's (one cycle peaks at the recipe's lr).
    if recipe["schedule"] == "onecycle":
        rates = [_one_cycle(i, total, recipe["lr"]) for i in range(total)]
    else:
        rates = [recipe["lr"]] * total
    assert [s["lr"] for s in watch.steps] == pytest.approx(rates, rel=1e-6)
    # Every step is the recipe's optimizer, as defined (its momentum and weight decay).
    hand = _HandOptimizer(recipe["optimizer"], None, recipe["momentum"], recipe["wd"])
    for s in watch.steps:
        assert s["mults"] == {(1.0, 1.0)}
        expected = hand.step(s["before"], s["grad"], s["n"], lr=s["lr"])
        for k in expected:
            hand_update = expected[k] - s["before"][k]
            update = s["after"][k] - s["before"][k]
            # float32 rounding: about 2e-5 of the update; without the fast recipe's weight
            # decay the updates of most parameters are off by 0.2 to 5 percent.
            assert np.abs(update - hand_update).max() < 1e-3 * np.abs(hand_update).max(), k
