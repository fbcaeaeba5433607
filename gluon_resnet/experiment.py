"""A training run from a configuration: what ``gluon-resnet train`` does.

``TrainConfig`` holds every choice of a run; its defaults are the recipe of
d2l-zh 5.11 (chapter ResNet-18, Fashion-MNIST at 96x96, Xavier, SGD with
learning rate 0.05, batch 256, 5 epochs).  ``run_training`` builds the data,
network and trainer, attaches the callbacks (progress, history, figure,
checkpoints) and trains, resuming from a checkpoint when asked.
"""

import dataclasses
import json
import os
import random
import time

import numpy as np

from ._mxnet import mx
from .checkpoint import read_checkpoint_meta
from .precision import PRECISIONS, enable_bf16, resolve_precision
from mxnet import gluon, init

__all__ = ["TrainConfig", "run_training", "build_network", "RunError"]


class RunError(ValueError):
    """A run cannot start: bad configuration, occupied folder, wrong checkpoint."""


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run (defaults: the chapter's recipe)."""

    model: str = "chapter_resnet18"
    epochs: int = 5
    lr: float = 0.05
    batch_size: int = 256
    resize: int = 96
    limit: int = None
    seed: int = 0
    optimizer: str = "sgd"
    momentum: float = 0.0
    wd: float = 0.0
    ctx: str = "auto"
    data_root: str = None
    num_classes: int = 10
    precision: str = "fp32"

    def validate(self):
        for name in ("epochs", "batch_size", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise RunError("%s must be a positive integer, got %r" % (name, value))
        for name in ("resize", "limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise RunError("%s must be a positive integer or None, got %r" % (name, value))
        if not self.lr > 0 or not np.isfinite(self.lr):
            raise RunError("lr must be a positive number, got %r" % self.lr)
        if self.precision not in PRECISIONS:
            raise RunError("precision must be one of %s, got %r" % (", ".join(PRECISIONS),
                                                                    self.precision))
        if self.momentum < 0 or self.wd < 0:
            raise RunError("momentum and wd must not be negative")
        from .models import list_models

        if self.model not in list_models():
            raise RunError("unknown model %r; the registered models are: %s"
                           % (self.model, ", ".join(list_models())))
        return self

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def seed_everything(seed):
    """Seed Python's, numpy's and MXNet's generators."""
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def build_network(config, ctx):
    """The registered model of ``config``, Xavier-initialised on ``ctx`` and hybridized."""
    from .models import get_model

    net = get_model(config.model, num_classes=config.num_classes)
    net.initialize(init.Xavier(), ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def _trainer(config, net):
    params = {"learning_rate": config.lr, "wd": config.wd}
    if config.optimizer in ("sgd", "nag"):
        params["momentum"] = config.momentum
    return gluon.Trainer(net.collect_params(), config.optimizer, params)


def _prepare_folder(out, resume, model):
    if resume:
        return out or os.path.dirname(os.path.abspath(resume))
    out = out or os.path.join("runs", "%s-%s" % (model, time.strftime("%Y%m%d-%H%M%S")))
    if os.path.exists(os.path.join(out, "checkpoint.ckpt")):
        raise RunError("%s already holds a checkpoint; resume it with --resume %s, or choose "
                       "another --out" % (out, os.path.join(out, "checkpoint.ckpt")))
    return out


#: What may change when a run is resumed: the rest would change the data or the network.
RESUME_CHANGES = ("epochs", "lr", "ctx", "data_root", "precision")


def _resolve_config(config, resume, overrides):
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not resume:
        return TrainConfig.from_dict(dict((config or TrainConfig()).to_dict(), **overrides)), None
    meta = read_checkpoint_meta(resume)
    stored = meta["config"]
    fixed = sorted(k for k, v in overrides.items() if k not in RESUME_CHANGES and v != stored.get(k))
    if fixed:
        raise RunError("cannot change %s when resuming %s (it was trained with %s); only %s "
                       "may change" % (", ".join(fixed), resume,
                                       ", ".join("%s=%r" % (k, stored.get(k)) for k in fixed),
                                       ", ".join(RESUME_CHANGES)))
    return TrainConfig.from_dict(dict(stored, **overrides)), meta


def run_training(config=None, out=None, resume=None, overrides=None, progress=None, quiet=False):
    """Train as ``config`` says, with checkpoints, history and figure in ``out``.

    Parameters
    ----------
    config : TrainConfig, optional
        The run; ``TrainConfig()`` (the chapter's recipe) by default.  Not used
        when resuming: the checkpoint holds the configuration.
    out : str, optional
        Run folder; by default ``runs/<model>-<date>-<time>``, or the folder
        of the checkpoint when resuming.
    resume : str, optional
        A ``checkpoint.ckpt`` to continue from, exactly where it stopped.
    overrides : dict, optional
        Fields of ``TrainConfig`` to change (None values are ignored).  When
        resuming only ``RESUME_CHANGES`` may differ from the checkpoint's:
        train longer, or continue with a lower learning rate.
    progress : bool or None
        Progress bar: None shows it when standard error is a terminal.
    quiet : bool
        Do not print the epoch lines.

    Returns
    -------
    (list of dict, str)
        The history and the run folder.

    Raises
    ------
    TrainingInterrupted
        On Ctrl-C, after saving ``out/checkpoint.ckpt``.
    TrainingDiverged
        When the loss becomes NaN or infinite; the last checkpoint is kept.
    """
    from .callbacks import Checkpointer, CurvePlotter, HistoryWriter, ProgressBar
    from .checkpoint import load_checkpoint
    from .data import load_data_fashion_mnist
    from .devices import parse_ctx
    from .training import Learner, PrintEpochs

    config, meta = _resolve_config(config, resume, overrides)
    config.validate()
    out = _prepare_folder(out, resume, config.model)
    ctxs = parse_ctx(config.ctx)
    seed_everything(config.seed)
    train_iter, test_iter = load_data_fashion_mnist(
        config.batch_size, resize=config.resize, root=config.data_root, limit=config.limit,
        seed=config.seed)
    precision = resolve_precision(config.precision, ctxs)
    if precision == "bf16":
        enable_bf16()  # before the network is built
    net = build_network(config, ctxs)
    trainer = _trainer(config, net)
    if precision == "bf16":
        from mxnet.contrib import amp

        amp.init_trainer(trainer)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(dict(config.to_dict(), precision_used=precision), f, indent=1)
    callbacks = [ProgressBar(progress), HistoryWriter(out),
                 CurvePlotter(os.path.join(out, "learning_curve.png"), title=config.model),
                 Checkpointer(os.path.join(out, "checkpoint.ckpt"), config.to_dict())]
    if not quiet:
        callbacks.append(PrintEpochs())
    learner = Learner(net, train_iter, test_iter, trainer, ctxs, callbacks=callbacks)
    if meta is not None:
        # One forward pass finishes deferred shape inference before loading.
        X, _ = next(iter(test_iter))
        net(X[:1].as_in_context(ctxs[0]))
        learner.restore(load_checkpoint(resume, net, trainer, ctx=ctxs))
        trainer.set_learning_rate(config.lr)  # the saved optimizer brings its own
    history = learner.fit(config.epochs)
    return history, out
