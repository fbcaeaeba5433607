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
from .models import get_model, list_models
from .precision import PRECISIONS, describe_precision, enable_bf16, resolve_precision
from mxnet import autograd, gluon, init

__all__ = ["TrainConfig", "run_training", "build_network", "build_trainer", "RunError", "RECIPES",
           "recipe_config"]


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
    precision: str = "auto"  # bf16 where AMX and the network's widths make it faster
    schedule: str = "constant"
    label_smoothing: float = 0.0
    augment: bool = False
    max_shift: int = 2  # largest random shift in pixels when augment is set (0: flips only)
    tta: bool = False  # evaluate with flip test-time augmentation
    recipe: str = "chapter"
    kvstore: str = "device"

    def validate(self):
        for name in ("epochs", "batch_size", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise RunError("%s must be a positive integer, got %r" % (name, value))
        if isinstance(self.max_shift, bool) or not isinstance(self.max_shift, int) \
                or self.max_shift < 0:
            raise RunError("max_shift must be a non-negative integer, got %r" % (self.max_shift,))
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
        if self.schedule not in SCHEDULES:
            raise RunError("schedule must be one of %s, got %r" % (", ".join(SCHEDULES),
                                                                   self.schedule))
        if not 0 <= self.label_smoothing < 1:
            raise RunError("label_smoothing must be in [0, 1), got %r" % self.label_smoothing)
        if self.kvstore not in KVSTORES:
            raise RunError("kvstore must be one of %s, got %r"
                           % (", ".join(KVSTORES), self.kvstore))
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


#: Learning-rate schedules: the book's constant rate, or one cycle (up, then down).
SCHEDULES = ("constant", "onecycle")

#: How gradients of several devices or processes are added up (``gluon.Trainer(kvstore=...)``):
#: one process ('device': on the devices, 'local': on the CPU; none with a single device), or
#: workers of a distributed job (see ``gluon_resnet.distributed``).
KVSTORES = ("device", "local", "dist_sync", "dist_device_sync")

#: Named recipes: changes to ``TrainConfig()`` (the chapter's recipe).  The
#: README gives the accuracy and time each one reached on this machine.
RECIPES = {
    # d2l-zh 5.11 as printed, the defaults of TrainConfig (precision auto: bf16 where
    # the CPU has AMX; the book's exact fp32 arithmetic with --precision fp32).
    "chapter": {},
    # compact_resnet8_w32 at 28x28 (3x3/2 stem, 32/64/128 channels: AMX-friendly widths,
    # so auto trains it in bf16), Nesterov momentum, one-cycle schedule peaking at 0.4,
    # label smoothing, 3 epochs.  Measured in the README: 3 seeds, test accuracy and wall
    # time from a cold start.
    "fast": {"model": "compact_resnet8_w32", "resize": None, "epochs": 3, "lr": 0.4,
             "batch_size": 256, "optimizer": "nag", "momentum": 0.9, "wd": 5e-4,
             "schedule": "onecycle", "label_smoothing": 0.1},
    # compact_resnet9 (compact_resnet8 with a deep stem) for 14 epochs with random
    # flips and shifts of at most one pixel (two did worse), evaluated with flip
    # test-time augmentation (about 12 min here).  auto keeps it in fp32: its 16- and
    # 48-channel layers run slower in bf16.
    "best": {"model": "compact_resnet9", "resize": None, "epochs": 14, "lr": 0.2,
             "batch_size": 256, "optimizer": "nag", "momentum": 0.9, "wd": 5e-4,
             "schedule": "onecycle", "label_smoothing": 0.1, "augment": True, "max_shift": 1,
             "tta": True},
}


def recipe_config(name, **changes):
    """``TrainConfig`` of recipe ``name`` with ``changes`` on top (None values ignored)."""
    if name not in RECIPES:
        raise RunError("unknown recipe %r; the recipes are: %s" % (name, ", ".join(RECIPES)))
    fields = dict(RECIPES[name], recipe=name)
    fields.update({k: v for k, v in changes.items() if v is not None})
    return TrainConfig(**fields)


def seed_everything(seed):
    """Seed Python's, numpy's and MXNet's generators."""
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def build_network(config, ctx):
    """The registered model of ``config``, Xavier-initialised on ``ctx`` and hybridized."""
    net = get_model(config.model, num_classes=config.num_classes)
    net.initialize(init.Xavier(), ctx=ctx)
    # static_alloc plans memory once; static_shape=False lets the last, smaller
    # batch and the evaluation batches reuse it instead of each keeping its own
    # buffers: measured here, peak RSS 1.96 GiB instead of 3.49 GiB for the
    # chapter's recipe, at the same speed.
    net.hybridize(static_alloc=True, static_shape=False)
    return net


def build_trainer(config, net, kv=None):
    """The ``gluon.Trainer`` of ``config`` for ``net`` (a distributed one with ``kv``).

    bf16 runs need no AMP loss scaler (``amp.init_trainer``): bf16 has fp32's
    exponent range, so gradients do not underflow, and the scaler's overflow
    check (``multi_all_finite`` over every gradient) cost 0.25 s of a 3.2 s
    step of the chapter's network here.
    """
    params = {"learning_rate": config.lr, "wd": config.wd}
    if config.optimizer in ("sgd", "nag"):
        params["momentum"] = config.momentum
    if kv is not None:  # the servers only add gradients up; each worker runs the optimizer
        from .distributed import DistributedTrainer

        return DistributedTrainer(net.collect_params(), config.optimizer, params, kvstore=kv,
                                  update_on_kvstore=False)
    return gluon.Trainer(net.collect_params(), config.optimizer, params, kvstore=config.kvstore)


def _join_job(config, resume, overrides):
    """Settle ``config.kvstore`` for this process; a distributed worker joins its job.

    Returns the distributed ``KVStore``, or None when training in one process.
    """
    from .distributed import DIST_KVSTORES, join_job, process_kvstore

    explicit = resume is None or (overrides or {}).get("kvstore") is not None
    try:
        config.kvstore = process_kvstore(config.kvstore, explicit)
        if config.kvstore not in DIST_KVSTORES:
            return None
        return join_job(config.kvstore, config.batch_size)
    except ValueError as exc:
        raise RunError(str(exc)) from None


def _load_data(config, kv):
    """The loaders; a worker of ``kv`` gets its equal share of every global batch."""
    from .data import load_data_fashion_mnist

    workers, rank = (kv.num_workers, kv.rank) if kv is not None else (1, 0)
    return load_data_fashion_mnist(
        config.batch_size // workers, resize=config.resize, root=config.data_root,
        limit=config.limit, seed=config.seed, augment=config.augment,
        max_shift=config.max_shift, num_parts=workers,
        part_index=rank, equal_parts=workers > 1)


def _job_callbacks(kv):
    """Callbacks of a distributed worker, and the parameter dump of ``GLUON_RESNET_DUMP_PARAMS``."""
    from .distributed import AverageRunningStats, final_parameters_callback

    callbacks = [AverageRunningStats(kv)] if kv is not None and kv.num_workers > 1 else []
    dump = final_parameters_callback(kv.rank if kv is not None else 0)
    return callbacks + ([dump] if dump is not None else [])


def _prepare_folder(out, resume, model):
    if resume:
        return out or os.path.dirname(os.path.abspath(resume))
    out = out or os.path.join("runs", "%s-%s" % (model, time.strftime("%Y%m%d-%H%M%S")))
    if os.path.exists(os.path.join(out, "checkpoint.ckpt")):
        raise RunError("%s already holds a checkpoint; resume it with --resume %s, or choose "
                       "another --out" % (out, os.path.join(out, "checkpoint.ckpt")))
    return out


#: What may change when a run is resumed: the rest would change the data or the network.
RESUME_CHANGES = ("epochs", "lr", "ctx", "data_root", "precision", "kvstore")


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

    In a worker of a distributed job (``DMLC_ROLE=worker``, as started by
    ``gluon-resnet launch``) the kvstore becomes ``dist_sync``, the batch size
    stays the global one and each worker trains on its shard; only worker 0
    evaluates, prints and writes ``out`` (see ``gluon_resnet.distributed``).

    Returns
    -------
    (list of dict, str or None)
        The history and the run folder (None on distributed workers but 0).

    Raises
    ------
    TrainingInterrupted
        On Ctrl-C, after saving ``out/checkpoint.ckpt``.
    TrainingDiverged
        When the loss becomes NaN or infinite; the last checkpoint is kept.
    """
    from .callbacks import (Checkpointer, CurvePlotter, HistoryWriter, OneCycleSchedule,
                            ProgressBar)
    from .checkpoint import load_checkpoint
    from .devices import parse_ctx
    from .distributed import finish_job
    from .training import LabelSmoothingLoss, Learner, PrintEpochs

    config, meta = _resolve_config(config, resume, overrides)
    config.validate()
    out = _prepare_folder(out, resume, config.model)
    ctxs = parse_ctx(config.ctx)
    kv = _join_job(config, resume, overrides)
    lead = kv is None or kv.rank == 0  # evaluates, prints and writes the run folder
    seed_everything(config.seed)
    train_iter, test_iter = _load_data(config, kv)
    # A throwaway copy of the network (not initialised) tells auto whether bf16 suits it.
    precision = resolve_precision(config.precision, ctxs,
                                  net=get_model(config.model, num_classes=config.num_classes))
    if precision == "bf16":
        enable_bf16()  # before the network is built
    net = build_network(config, ctxs)
    trainer = build_trainer(config, net, kv)
    if lead:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(dict(config.to_dict(), precision_used=precision,
                           workers=kv.num_workers if kv is not None else 1), f, indent=1)
        callbacks = [ProgressBar(progress), HistoryWriter(out),
                     CurvePlotter(os.path.join(out, "learning_curve.png"), title=config.model),
                     Checkpointer(os.path.join(out, "checkpoint.ckpt"), config.to_dict())]
        if not quiet:
            print(describe_precision(precision), flush=True)
            callbacks.append(PrintEpochs())
            if kv is not None:
                print("distributed: %d workers, kvstore %s, global batch %d = %d x %d"
                      % (kv.num_workers, config.kvstore, config.batch_size, kv.num_workers,
                         config.batch_size // kv.num_workers), flush=True)
    else:
        out, callbacks = None, []
    callbacks += _job_callbacks(kv)
    if config.schedule == "onecycle":
        callbacks.append(OneCycleSchedule(config.lr))
    loss = (LabelSmoothingLoss(config.label_smoothing, config.num_classes)
            if config.label_smoothing else None)
    learner = Learner(net, train_iter, test_iter if lead else None, trainer, ctxs, loss=loss,
                      callbacks=callbacks, handle_sigint=lead,
                      num_workers=kv.num_workers if kv is not None else 1, eval_flip=config.tta)
    if meta is not None:
        # One forward pass finishes deferred shape inference before loading.  In training
        # mode, so that oneDNN leaves the weights in the default layout, the only one a
        # distributed kvstore can push; the checkpoint overwrites whatever the pass changed.
        X, _ = next(iter(test_iter))
        with autograd.train_mode():
            net(X[:1].as_in_context(ctxs[0]))
        learner.restore(load_checkpoint(resume, net, trainer, ctx=ctxs))
        trainer.set_learning_rate(config.lr)  # the saved optimizer brings its own
    history = learner.fit(config.epochs)
    if kv is not None:
        finish_job(kv)
    return history, out
