"""A training run from a configuration: what ``gluon-resnet train`` does.

``run_training`` reads as the list of what a run is made of, each a public
builder that the benchmark and the tests use too: ``resolve_config`` (the
configuration, or a checkpoint's), ``start_job`` (this process's place in a
distributed job), ``run_folder`` and its lock, ``prepare_folder`` (never
another run's folder), ``build_data``, ``settle_config`` (what the job and
the data decide), ``check_batch_size``, ``choose_precision``,
``check_memory``, ``build_network``, ``build_trainer``, ``build_loss``,
``write_config``, ``build_callbacks`` (progress, history, figure,
checkpoints) and ``restore``.  The checks refuse a run before it spends
anything.  No builder changes the (frozen) ``TrainConfig`` it is given:
each gets what it needs as arguments, so the order of the calls is the
order of what they need.

What the network was trained on, ``train_iter.description()`` (a
``gluon_resnet.data.DataDescription``: class names, channels, input size,
normalisation), goes into ``config.json`` as ``data`` and into every
checkpoint as ``meta["data"]`` (its ``to_dict()``); ``gluon-resnet eval``,
``predict`` and ``export`` read it from there.
"""

import contextlib
import dataclasses
import json
import os
import random
import time
import warnings

import numpy as np

from ._mxnet import mx
from ._testsignal import signal_at
from mxnet import autograd, gluon, init

from .callbacks import (Checkpointer, CurvePlotter, HistoryWriter, OneCycleSchedule, PrintEpochs,
                        ProgressBar)
from .checkpoint import (CHECKPOINT_NAME, atomic_write, checkpoint_file, read_checkpoint,
                         remove_temporary_files)
from .config import (RECIPES, RESUME_CHANGES, KVSTORES, SCHEDULES, RunError, TrainConfig, flag,
                     recipe_config)
from .data import load_data_fashion_mnist, load_data_image_folder
from .devices import available_memory, parse_ctx
from .events import TrainingInterrupted
from .distributed import (AverageRunningStats, DistributedTrainer, Job, WatchSteps,
                          final_parameters_callback, join_job)
from .models import get_model
from .pretrained import load_pretrained
from .precision import Case, describe_precision, enable_bf16, resolve_precision
from .runlock import RunLock
from .signals import StopSignals, hook_callbacks
from .summary import activation_bytes
from .trained import data_description
from .training import LabelSmoothingLoss, Learner
from .validate import in_flags

__all__ = ["TrainConfig", "RunError", "RECIPES", "recipe_config", "RESUME_CHANGES", "KVSTORES",
           "SCHEDULES", "HEAD_LR_MULT", "run_training", "resolve_config", "prepare_folder",
           "run_folder", "start_job", "seed_everything", "build_data", "settle_config",
           "check_batch_size", "choose_precision", "check_memory", "build_network",
           "build_trainer", "build_loss", "write_config", "build_callbacks", "restore",
           "data_description"]


#: A fine-tuned network's output layer learns this many times faster than its body
#: (``lr_mult``), as in the book's fine-tuning section.
HEAD_LR_MULT = 10


def run_training(config=None, out=None, resume=None, overrides=None, progress=None, quiet=False,
                 callbacks=(), checkpoint_minutes=10, checkpoint_batches=None):
    """Train as ``config`` says, with checkpoints, history and figure in ``out``.

    Parameters
    ----------
    config : TrainConfig, optional
        The run; ``TrainConfig()`` (the chapter's recipe) by default.  Not used
        when resuming: the checkpoint holds the configuration.
    out : str, optional
        Run folder; by default ``runs/<model>-<date>-<time>``, or the folder
        of the checkpoint when resuming.  A folder that holds another run is
        refused.
    resume : str, optional
        A ``checkpoint.ckpt``, or a run folder (its ``checkpoint.ckpt``), to
        continue from, exactly where it stopped.
    overrides : dict, optional
        Fields of ``TrainConfig`` to change (None values are ignored).  When
        resuming only ``RESUME_CHANGES`` may differ from the checkpoint's:
        train longer, or continue with a lower learning rate.
    progress : bool or None
        Progress bar: None shows it when standard error is a terminal.
    quiet : bool
        Do not print the precision and epoch lines.
    callbacks : list of Callback
        More callbacks for the ``Learner``.
    checkpoint_minutes : float, default 10
        Also save a checkpoint during an epoch when this many minutes passed
        since the last one (0: only at epoch ends and on stop signals).
    checkpoint_batches : int, optional
        Also save one every this many batches of an epoch (for tests).

    The run folder belongs to this run while it trains: ``out/run.lock``
    (``runlock.RunLock``) makes a second training into it fail at once.

    In a worker of a distributed job (``DMLC_ROLE=worker``, as started by
    ``gluon-resnet launch``) the kvstore becomes ``dist_sync``, the batch size
    stays the global one and each worker trains on its shard; only worker 0
    evaluates, prints, writes and locks ``out`` (see ``gluon_resnet.distributed``).

    Returns
    -------
    (list of dict, str or None)
        The history and the run folder (None on distributed workers but 0).

    Raises
    ------
    RunError
        Before anything is written: a bad configuration, a folder in use or
        holding another run, a finished run resumed without more epochs, a
        batch larger than the training set or one that cannot fit in memory.
    TrainingInterrupted
        On SIGINT (Ctrl-C), SIGTERM or SIGHUP, after saving ``out/checkpoint.ckpt``;
        before the first batch at once, with nothing saved (its ``checkpoint`` is the
        resumed one, unchanged, or None).  A signal ignored when the run starts
        (``nohup``, a background job) stays ignored.
    TrainingDiverged
        When the loss becomes NaN or infinite; the last checkpoint is kept.
    SaveError
        A file of the run folder could not be written (disk full, read-only);
        the last checkpoint is kept.
    """
    # From here on a stop signal ends the run with a message, never a traceback: at once
    # while there is nothing to save, after the running batch once training runs.  The run
    # lock is taken and let go outside ``interruptible``, where a signal is only recorded.
    with StopSignals() as stop:
        with stop.interruptible():
            stop.doing = "while starting"
            resume = checkpoint_file(resume) if resume else None
            config, saved = resolve_config(config, resume, overrides)
            ctxs = parse_ctx(config.ctx)
            explicit = saved is None or (overrides or {}).get("kvstore") is not None
            job = start_job(config, explicit)
            if not job.lead:
                stop.release()  # workers other than the lead leave stop signals to it
            out = run_folder(out, resume, config.model)
        with (RunLock(out) if job.lead else contextlib.nullcontext()):
            try:
                with stop.interruptible():
                    history = _train(config, resume, saved, ctxs, job, out, stop, progress,
                                     quiet, callbacks, checkpoint_minutes, checkpoint_batches)
            except TrainingInterrupted as exc:
                if exc.checkpoint is None and saved is not None:
                    exc.checkpoint = resume  # stopped before training went on: it is unchanged
                raise
    job.finish()
    return history, out if job.lead else None


def _train(config, resume, saved, ctxs, job, out, stop, progress, quiet, callbacks,
           checkpoint_minutes, checkpoint_batches):
    """The body of ``run_training`` in the locked run folder; ``stop.doing`` follows it."""
    if job.lead:
        signal_at("start")
        prepare_folder(out, resume, config.model)
        remove_temporary_files(out)  # what a killed run was writing; the lock is ours
    seed_everything(config.seed)
    stop.doing = "while loading the data"
    signal_at("data")
    train_iter, test_iter = build_data(config, job, quiet=quiet or not job.lead)
    config = settle_config(config, job, train_iter)
    check_batch_size(config, train_iter)
    data = train_iter.description()
    stop.doing = "while measuring the precision"
    precision = choose_precision(config, ctxs, train_iter)
    stop.doing = "while building the network"
    signal_at("network")
    # The network is built once, after the precision is known (AMP must be on before a
    # network is built): the memory check reads it symbolically, then it trains.  Built
    # apart from it: auto's throwaway copy (its FLOPs count initialises it in its own
    # way), the copies the precision measurement builds in child processes, and for
    # fine-tuning the memory check's copy (the network that trains comes from its file).
    net = None if config.pretrained else get_model(config.model, num_classes=config.num_classes)
    check_memory(config, data, precision, ctxs, net=net)
    net = build_network(config, ctxs, in_channels=data.channels, load_weights=saved is None,
                        out=print if job.lead and not quiet else None, net=net)
    stop.doing = "before the first batch"
    trainer = build_trainer(config, net, job.kv)
    if job.lead:
        write_config(out, config, precision, job, data)
    learner = Learner(net, train_iter, test_iter if job.lead else None, trainer, ctxs,
                      loss=build_loss(config), eval_flip=config.tta, handle_signals=job.lead,
                      seed=config.seed,
                      callbacks=build_callbacks(config, job, out, precision, progress, quiet,
                                                data=data,
                                                checkpoint_minutes=checkpoint_minutes,
                                                checkpoint_batches=checkpoint_batches)
                      + list(callbacks) + hook_callbacks())
    if saved is not None:
        restore(learner, saved, config)
    return learner.fit(config.epochs)


def resolve_config(config=None, resume=None, overrides=None):
    """The validated configuration of a run, and the ``Checkpoint`` it resumes (or None).

    The checkpoint file (or a run folder's) is read once, here; ``restore``
    loads from what was read.  A resumed run must have epochs left to train.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not resume:
        fields = dict((config or TrainConfig()).to_dict(), **overrides)
        return TrainConfig.from_dict(fields).validate(), None
    saved = read_checkpoint(resume)
    stored = saved.meta["config"]
    fixed = sorted(k for k, v in overrides.items()
                   if k not in RESUME_CHANGES and v != stored.get(k))
    if fixed:
        refusal = "cannot change %s when resuming %s (it was trained with %s); only %s may change"
        raise in_flags(
            RunError(refusal % (", ".join(fixed), resume,
                                ", ".join("%s=%r" % (k, stored.get(k)) for k in fixed),
                                ", ".join(RESUME_CHANGES))),
            refusal % (", ".join(flag(k) for k in fixed), resume,
                       ", ".join(flag(k, stored.get(k)) for k in fixed),
                       ", ".join(flag(k) for k in RESUME_CHANGES)))
    config = TrainConfig.from_dict(dict(stored, **overrides)).validate()
    done = saved.meta["epoch"]
    if config.epochs <= done:
        asked = ("--epochs %d would train none" % config.epochs if "epochs" in overrides
                 else "it has finished")
        raise RunError("%s has already trained %d epoch%s, so %s: give --epochs %d or more to "
                       "train longer (nothing was changed)"
                       % (resume, done, "s" * (done != 1), asked, done + 1))
    return config, saved


def run_folder(out, resume, model):
    """Where a run writes: ``out``, else the checkpoint's folder, else a new dated one."""
    if out:
        return out
    if resume:
        return os.path.dirname(os.path.abspath(checkpoint_file(resume)))
    return os.path.join("runs", "%s-%s" % (model, time.strftime("%Y%m%d-%H%M%S")))


def _holds_a_run(folder):
    return any(os.path.exists(os.path.join(folder, name))
               for name in (CHECKPOINT_NAME, "config.json", "history.json"))


def prepare_folder(out, resume, model):
    """The run folder (``run_folder``), refused when it holds another run.

    A new run never goes into a folder with a checkpoint; a resumed one goes
    into the checkpoint's own folder or one without a run, so that no command
    overwrites another run's checkpoint.
    """
    out = run_folder(out, resume, model)
    if resume:
        resume = checkpoint_file(resume)
        own = os.path.dirname(os.path.realpath(resume))
        if os.path.realpath(out) != own and _holds_a_run(out):
            raise RunError("%s holds another run, which resuming %s there would overwrite; "
                           "leave out --out to continue in the checkpoint's own folder %s, or "
                           "give a new folder" % (out, resume, os.path.dirname(resume) or "."))
        return out
    if os.path.exists(os.path.join(out, CHECKPOINT_NAME)):
        raise RunError("%s already holds a checkpoint; resume it with --resume %s, or choose "
                       "another --out" % (out, out))
    return out


def start_job(config, explicit=True):
    """This process's ``Job``: its ``kvstore`` is the one it trains with (``settle_config``).

    ``explicit`` is False when the kvstore comes from a resumed checkpoint: a
    distributed run's checkpoint then resumes in one process.
    """
    try:
        return join_job(config.kvstore, config.batch_size, explicit)
    except ValueError as exc:
        raise RunError(str(exc)) from None


def seed_everything(seed):
    """Seed Python's, numpy's and MXNet's generators."""
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def build_data(config, job=None, quiet=False):
    """``(train_iter, test_iter)``; a worker of ``job`` gets its share of every global batch.

    With ``config.data`` the images come from that folder
    (``load_data_image_folder``, with its notices printed unless ``quiet``),
    whose classes are ``train_iter.classes`` (``settle_config`` makes them
    the run's); otherwise from Fashion-MNIST.  ``job`` None: a single process.
    """
    job = job or Job()
    if config.data is not None:
        return load_data_image_folder(
            config.data, job.local_batch(config.batch_size), resize=config.resize,
            limit=config.limit, seed=config.seed, augment=config.augment,
            max_shift=config.max_shift, num_parts=job.num_workers, part_index=job.rank,
            equal_parts=job.num_workers > 1, erase=config.erase, val_fraction=config.val_fraction,
            skip_bad_images=config.skip_bad_images,
            notice=(lambda line: None) if quiet else print)
    return load_data_fashion_mnist(
        job.local_batch(config.batch_size), resize=config.resize, root=config.data_root,
        limit=config.limit, seed=config.seed, augment=config.augment,
        max_shift=config.max_shift, num_parts=job.num_workers, part_index=job.rank,
        equal_parts=job.num_workers > 1, erase=config.erase)


def settle_config(config, job, train_iter):
    """``config`` as this process trains it: a new ``TrainConfig`` with what was worked out.

    The kvstore is ``job``'s; with ``config.data``, ``num_classes`` is the
    number of the folder's classes (``train_iter.classes``).  The builders
    after it (network, loss, trainer, ``config.json``, checkpoints) take the
    new configuration.
    """
    changes = {"kvstore": job.kvstore}
    if config.data is not None:
        changes["num_classes"] = len(train_iter.classes)
    return dataclasses.replace(config, **changes)


def check_batch_size(config, train_iter):
    """Refuse a batch larger than the whole training set (``RunError`` with both numbers)."""
    total = len(train_iter.images)
    if config.batch_size > total:
        raise RunError("the batch size %d is larger than the training set (%d images); give "
                       "--batch-size %d or less" % (config.batch_size, total, total))


def check_memory(config, data, precision, ctxs, available=None, net=None):
    """Refuse a batch whose training cannot fit in main memory, before the first step.

    The estimate is a lower bound: the outputs of the network's convolutions
    for one batch of the images ``data`` (a ``DataDescription``) describes
    (kept for the backward pass; two bytes a value in bf16, four in fp32;
    ``summary.activation_bytes``), against ``available`` bytes (default:
    ``devices.available_memory()``; no check when unknown, or when training
    on GPUs).  ``net``: ``config``'s network, not yet initialised (default:
    one built here).
    """
    if any(ctx.device_type != "cpu" for ctx in ctxs):
        return
    available = available_memory() if available is None else available
    if available is None:
        return
    size = data.size
    if net is None:
        net = get_model(config.model, num_classes=config.num_classes)
    try:
        per_image = activation_bytes(net, (1,) + data.input_shape,
                                     value_bytes=2 if precision == "bf16" else 4)
    except mx.base.MXNetError:
        return  # an input the network cannot take: the first step says so
    needed = per_image * config.batch_size
    if needed > available:
        raise RunError("a batch of %d images of %dx%d needs at least %s for the outputs of "
                       "%s's convolutions, but only %s of memory is available; give a smaller "
                       "--batch-size or --resize" % (config.batch_size, size[0], size[1],
                                                     _amount(needed), config.model,
                                                     _amount(available)))


def _amount(nbytes):
    """``'1.4 GB'``, or ``'8 MB'`` below a tenth of a gigabyte."""
    return "%.1f GB" % (nbytes / 1e9) if nbytes >= 1e8 else "%.0f MB" % (nbytes / 1e6)


def choose_precision(config, ctxs, train_iter=None):
    """``'bf16'`` or ``'fp32'`` for ``config.precision`` here; turns AMP on for bf16.

    ``auto`` decides for the network, ``train_iter``'s images and the run's
    steps (``precision.resolve_precision``, given a throwaway copy of the
    network to count the run's work; without ``train_iter``: fp32).  AMP must
    be on before the network that trains is built.
    """
    case = None
    if train_iter is not None:
        data = train_iter.description()
        case = Case(config.model, data.channels, data.size, train_iter.batch_size,
                    config.ctx, "train", len(train_iter) * config.epochs, config.num_classes)
    net = None  # only auto decides with it
    if case is not None and config.precision == "auto":
        net = get_model(config.model, num_classes=config.num_classes)
    precision = resolve_precision(config.precision, ctxs, case=case, net=net)
    if precision == "bf16":
        enable_bf16()
    return precision


def build_network(config, ctx, in_channels=1, load_weights=True, out=None, net=None):
    """The registered model of ``config``, initialised on ``ctx`` and hybridized.

    Xavier initialisation.  With ``config.pretrained`` (fine-tuning, as in the
    book's fine-tuning section) the network is built from the file by
    ``load_pretrained``; when the file's classifier has other
    classes than ``config.num_classes`` the output layer is new (Xavier), and
    either way the output layer's parameters learn at ``HEAD_LR_MULT`` (10)
    times the body's learning rate (``lr_mult``).

    Parameters
    ----------
    config : TrainConfig
    ctx : mxnet.Context or list of Context
    in_channels : int, default 1
        Input channels of the data (Fashion-MNIST: 1).  Used with
        ``config.pretrained`` only: 1 sums the stem's RGB filters.
    load_weights : bool, default True
        Read ``config.pretrained``.  False builds the same network without
        reading the file (with the head's ``lr_mult``): a resumed run and an
        evaluation overwrite every weight from the checkpoint, so the file
        need not be there any more.
    out : callable, optional
        Prints what was loaded from ``config.pretrained`` (counts, the layer
        left out, notices such as the summed stem); None issues the notices
        as ``UserWarning`` instead.
    net : mxnet.gluon.HybridBlock, optional
        ``config``'s network as ``get_model`` built it, not yet initialised
        nor hybridized, to use instead of building another (without
        ``config.pretrained`` only).
    """
    kwargs = {"num_classes": config.num_classes}
    if config.pretrained is None:
        if net is None:
            net = get_model(config.model, **kwargs)
        net.initialize(init.Xavier(), ctx=ctx)
    else:
        kwargs["in_channels"] = in_channels
        if load_weights:
            net, report = load_pretrained(config.model, config.pretrained, **kwargs)
            net.collect_params().reset_ctx(ctx)
            if report.skipped:
                net.output.initialize(init.Xavier(), ctx=ctx, force_reinit=True)
            if out is not None:
                out(str(report))
            for notice in report.notices if out is None else ():
                warnings.warn(notice, UserWarning, stacklevel=2)
        else:
            net = get_model(config.model, **kwargs)
            net.initialize(init.Xavier(), ctx=ctx)
        for param in net.output.collect_params().values():
            param.lr_mult = HEAD_LR_MULT
    # static_shape=False: the last, smaller batch and evaluation reuse static_alloc's memory.
    net.hybridize(static_alloc=True, static_shape=False)
    return net


def build_trainer(config, net, kv=None):
    """The ``gluon.Trainer`` of ``config`` for ``net`` (a ``DistributedTrainer`` with ``kv``).

    bf16 runs need no AMP loss scaler (``amp.init_trainer``): bf16 has fp32's
    exponent range, so gradients do not underflow, and the scaler's overflow
    check (``multi_all_finite`` over every gradient) costs time in every step.
    """
    params = {"learning_rate": config.lr, "wd": config.wd}
    if config.optimizer in ("sgd", "nag"):
        params["momentum"] = config.momentum
    if kv is not None:  # the servers only add gradients up; each worker runs the optimizer
        return DistributedTrainer(net.collect_params(), config.optimizer, params, kvstore=kv,
                                  update_on_kvstore=False)
    return gluon.Trainer(net.collect_params(), config.optimizer, params, kvstore=config.kvstore)


def build_loss(config):
    """Softmax cross-entropy, with label smoothing when ``config`` asks for it."""
    if config.label_smoothing:
        return LabelSmoothingLoss(config.label_smoothing, config.num_classes)
    return gluon.loss.SoftmaxCrossEntropyLoss()


def write_config(out, config, precision, job, data=None):
    """Write ``out/config.json``: ``config``, the precision used, the workers and ``data``.

    ``data`` is the training data's ``description()`` (a ``DataDescription``,
    stored as its ``to_dict()``); the file is written atomically
    (``checkpoint.atomic_write``).
    """
    stored = None if data is None else data.to_dict()

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(dict(config.to_dict(), precision_used=precision, workers=job.num_workers,
                           data=stored), f, indent=1)

    atomic_write(os.path.join(out, "config.json"), write)


def build_callbacks(config, job, out, precision, progress=None, quiet=False, data=None,
                    checkpoint_minutes=10, checkpoint_batches=None):
    """The callbacks of a run; the lead's write into ``out``, and it prints.

    The lead process (a single process, or worker 0) gets the progress bar,
    history files, learning-curve figure, checkpoints (with ``data``, the
    training data's ``description()``; at epoch ends, on stop signals, and
    as ``checkpoint_minutes`` and ``checkpoint_batches`` say: see
    ``Checkpointer``) and, unless ``quiet``, the printed lines (the
    precision now, then the epochs).  Every process gets the schedule and
    what its job needs.
    """
    callbacks = [OneCycleSchedule(config.lr)] if config.schedule == "onecycle" else []
    if job.num_workers > 1:
        callbacks.append(AverageRunningStats(job.kv))
    if job.watch is not None:
        callbacks.append(WatchSteps(job.watch))
    dump = final_parameters_callback(job.rank)
    if dump is not None:
        callbacks.append(dump)
    if not job.lead:
        return callbacks
    callbacks += [ProgressBar(progress), HistoryWriter(out),
                  CurvePlotter(os.path.join(out, "learning_curve.png"), title=config.model),
                  Checkpointer(os.path.join(out, CHECKPOINT_NAME), config.to_dict(), data=data,
                               minutes=checkpoint_minutes, batches=checkpoint_batches)]
    if not quiet:
        print(describe_precision(precision), flush=True)
        if job.distributed:
            print(job.describe(config.batch_size), flush=True)
        callbacks.append(PrintEpochs())
    return callbacks


def restore(learner, saved, config):
    """Continue ``learner`` from the ``Checkpoint`` ``saved``, exactly where it stopped.

    One forward pass first finishes deferred shape inference, in training
    mode, so that oneDNN leaves the weights in the default layout, the only
    one a distributed kvstore can push; the checkpoint overwrites whatever
    the pass changed.  The learning rate is ``config.lr`` (the saved
    optimizer state brings its own).
    """
    X, _ = next(iter(learner.test_iter if learner.test_iter is not None else learner.train_iter))
    with autograd.train_mode():
        learner.net(X[:1].as_in_context(learner.ctxs[0]))
    learner.restore(saved.load_into(learner.net, learner.trainer, ctx=learner.ctxs))
    learner.trainer.set_learning_rate(config.lr)
