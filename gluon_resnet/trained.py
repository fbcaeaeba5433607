"""A trained network read back from its file: what ``eval``, ``predict`` and ``export`` share.

``load_trained`` is the one way to get a trained network ready to compute:
it reads the file once, works out the precision, builds the registered
network (after AMP, when bf16), finishes its shapes with one pass over zeros
and loads every weight.  How the network then runs (oneDNN fusion, a wrapper
that normalises) is the caller's choice.

What the network was trained on is the checkpoint's data description,
``meta["data"]``, written by training (``gluon_resnet.experiment``) and read
back as a ``gluon_resnet.data.DataDescription`` (``data_description``); a
checkpoint without it is a Fashion-MNIST run.
"""

import dataclasses
import os
import sys

from ._mxnet import mx

from .arrays import numpy_mode
from .checkpoint import Checkpoint, CheckpointError, checkpoint_file, read_checkpoint
from .config import TrainConfig
from .data import DataDescription
from .int8 import Int8Error, auto_int8, int8_file, load_int8, read_int8_record
from .models import get_model
from .autoprecision import Decision
from .precision import Case, Precision, enable_bf16, resolve_precision

__all__ = ["Trained", "load_trained", "data_description"]


@dataclasses.dataclass(frozen=True)
class Trained:
    """A network from ``load_trained`` and what it was trained with.

    Attributes
    ----------
    net : mxnet.gluon.HybridBlock
        The network with every weight loaded, not hybridized.
    config : TrainConfig
        The run's configuration.
    data : DataDescription
        What the network was trained on (classes, channels, size, normalisation).
    precision : str
        ``"fp32"``, ``"bf16"`` or ``"int8"``: what the network computes in (a
        ``precision.Precision``, whose ``why`` says how ``auto`` chose it).
    checkpoint : Checkpoint or None
        The checkpoint read; None for a ``.params`` file.
    """

    net: object
    config: TrainConfig
    data: DataDescription
    precision: str
    checkpoint: Checkpoint = None


def load_trained(path, ctx=None, precision="fp32", model=None, notice=None, batch_size=256,
                 size=None):
    """The trained network stored at ``path``, on ``ctx``, as a ``Trained``.

    Parameters
    ----------
    path : str
        A ``checkpoint.ckpt`` written by training (or its run folder).  With
        ``model``, a file whose name does not end in ``.ckpt`` is a
        ``.params`` file (``save_parameters``) of that registered network,
        taken as a Fashion-MNIST run of ``TrainConfig(model=model)``.
    ctx : mxnet.Context, optional
        Where the network computes (default: the CPU).
    precision : {"fp32", "bf16", "auto", "int8"}
        Resolved by ``precision.resolve_precision`` for this network; bf16
        turns on AMP for the whole process (``precision.enable_bf16``) before
        the network is built.  ``"int8"`` gives the run's quantized network
        (``gluon-resnet quantize``; ``int8.load_int8``), a ``SymbolBlock``;
        ``"auto"`` chooses it where it exists, passed its accuracy check and
        runs faster here (``int8.auto_int8``).
    model : str, optional
        The registered network the file must hold; a checkpoint of another
        one is refused.
    notice : callable, optional
        Gets the line of a bf16 that falls back to fp32 (default: standard error).
    batch_size, size : int and (H, W), optional
        The batches the network will compute, for ``"auto"``'s inference decision
        (``size`` defaults to the size it was trained at).

    Raises
    ------
    CheckpointError
        The file is not a checkpoint, holds no configuration, or does not
        hold the parameters of its network; with ``"int8"``: the run has no
        int8 network, or a damaged one, or one of other weights (``Int8Error``).
    ValueError
        ``model`` differs from the checkpoint's.
    """
    ctx = ctx or mx.cpu()
    config, saved = _stored_config(path, model)
    data = data_description(saved.meta if saved is not None else {"config": config.to_dict()})
    if precision == "int8":
        if saved is None:
            raise Int8Error("%s is a .params file, which has no int8 network: quantize a run's "
                            "checkpoint (gluon-resnet quantize --params RUN)" % path)
        net, record = load_int8(saved, ctx)
        decision = Decision("int8", "requested", reason=_int8_why(record))
        return Trained(net, config, data, Precision("int8", decision), saved)
    case = Case(config.model, data.channels, tuple(size or data.size), batch_size,
                mode="infer", num_classes=config.num_classes)
    # No network for the decision: an inference case is never measured (the cache or fp32
    # decides), so the one network is built once, after AMP is on for bf16.
    auto, precision = precision == "auto", resolve_precision(precision, [ctx], notice=notice,
                                                             case=case)
    if auto and saved is not None and ctx.device_type == "cpu" \
            and os.path.isfile(int8_file(saved.path)):
        chosen = _auto_int8(saved, config, data, ctx, notice, size, precision.decision)
        if chosen is not None:
            return chosen
    if precision == "bf16":
        enable_bf16()  # before the network is built
    net = get_model(config.model, num_classes=config.num_classes)
    net.initialize(ctx=ctx)  # every weight comes from the file
    net(mx.nd.zeros((1,) + data.input_shape, ctx=ctx))  # the shapes
    if saved is not None:
        saved.load_into(net, ctx=ctx, restore_random_state=False)
    else:
        try:
            net.load_parameters(path, ctx=ctx)
        except (AssertionError, mx.base.MXNetError) as exc:
            raise CheckpointError("%s does not hold the parameters of %s (%s)"
                                  % (path, config.model, str(exc).splitlines()[0])) from None
    return Trained(net, config, data, precision, saved)


def _int8_why(record):
    return "oneDNN's quantized kernels, calibrated on %s training images; test acc %.4f " \
        "against %.4f in fp32" % (record.get("calibration_images"), record.get("int8_accuracy"),
                                  record.get("fp32_accuracy"))


def _auto_int8(saved, config, data, ctx, notice, size, rival):
    """The int8 ``Trained`` where ``auto`` takes it (``int8.auto_int8``), else None.

    int8 is compared with what ``auto`` takes otherwise, ``rival`` (an
    ``autoprecision.Decision``): fused fp32, or bf16 where this machine's
    inference decision is bf16.
    """
    notice = notice or (lambda line: print(line, file=sys.stderr))
    try:
        record = read_int8_record(saved)
    except Int8Error as exc:  # auto goes on without it, saying why
        notice("gluon-resnet: %s; auto leaves int8 out" % exc)
        return None
    if numpy_mode():
        return None
    net = get_model(config.model, num_classes=config.num_classes)
    net.initialize(ctx=ctx)
    net(mx.nd.zeros((1,) + data.input_shape, ctx=ctx))
    saved.load_into(net, ctx=ctx, restore_random_state=False)
    use, why = auto_int8(saved, net, (data.channels,) + tuple(size or data.size), record,
                         notice, rival)
    if not use:
        notice("gluon-resnet: %s; not int8" % why)
        return None
    int8_net, record = load_int8(saved, ctx)
    decision = Decision("int8", "measured", reason=why)
    return Trained(int8_net, config, data, Precision("int8", decision), saved)


def _stored_config(path, model):
    """The run's ``TrainConfig`` and its ``Checkpoint`` (None for a ``.params`` file)."""
    if model and not checkpoint_file(path).endswith(".ckpt"):
        return TrainConfig(model=model), None
    saved = read_checkpoint(path)
    if "config" not in saved.meta:
        raise CheckpointError("%s holds no training configuration" % path)
    config = TrainConfig.from_dict(saved.meta["config"])
    if model and model != config.model:
        raise ValueError("%s is a checkpoint of %s, not of %s" % (saved.path, config.model, model))
    return config, saved


def data_description(meta):
    """The ``DataDescription`` of a checkpoint's ``meta``: ``meta["data"]``, checked.

    A checkpoint without ``meta["data"]`` is a Fashion-MNIST run at its
    configuration's ``resize`` (``DataDescription.from_dict``).

    Raises
    ------
    CheckpointError
        ``meta["data"]`` is there but malformed; the message names the field.
    """
    try:
        return DataDescription.from_dict(meta.get("data"),
                                         resize=(meta.get("config") or {}).get("resize"))
    except ValueError as exc:
        raise CheckpointError("the checkpoint's %s" % exc) from None
