"""Checkpoints: one file holding everything needed to resume training exactly.

A checkpoint is a zip archive with three members:

- ``model.params``: the network's parameters (``save_parameters``),
- ``trainer.states``: the optimizer state (``Trainer.save_states``),
- ``meta.json``: epoch, batch within the epoch, metric sums of a partial epoch,
  history, configuration, parameter shapes and random states.

It is written to a temporary file in the same folder and renamed over the old
one, so a crash while writing never leaves a half-written checkpoint behind.
"""

import json
import os
import random
import shutil
import tempfile
import zipfile

import numpy as np

from ._mxnet import mx

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint_meta", "CheckpointError",
           "atomic_write"]

FORMAT = "gluon_resnet-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or belongs to another model."""


def atomic_write(path, write):
    """Call ``write(tmp_path)`` then rename the temporary file to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def param_shapes(net):
    """``{structural name: shape}`` of the network's parameters."""
    return {name: list(p.shape) for name, p in net._collect_params_with_prefix().items()}


def _random_state():
    np_state = np.random.get_state()
    return {"numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]]}


def _set_random_state(state):
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(path, net, trainer, meta):
    """Write ``net``'s parameters, ``trainer``'s state and ``meta`` to ``path`` atomically.

    Parameters
    ----------
    path : str
        Target file (conventionally ``*.ckpt``).
    net : mxnet.gluon.Block
    trainer : mxnet.gluon.Trainer or None
    meta : dict
        JSON-serialisable state (epoch, batch, history, config, ...).  The
        parameter shapes, the format tag and the random states are added.
    """
    meta = dict(meta, format=FORMAT, param_shapes=param_shapes(net), random_state=_random_state())
    mx.nd.waitall()
    work = tempfile.mkdtemp(prefix="gluon_resnet-ckpt-")
    try:
        net.save_parameters(os.path.join(work, "model.params"))
        if trainer is not None:
            trainer.save_states(os.path.join(work, "trainer.states"))

        def write(tmp):
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
                z.writestr("meta.json", json.dumps(meta, indent=1))
                for name in ("model.params", "trainer.states"):
                    member = os.path.join(work, name)
                    if os.path.exists(member):
                        z.write(member, name)

        atomic_write(path, write)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_checkpoint_meta(path):
    """The ``meta.json`` of a checkpoint, with clear errors for bad files."""
    if not os.path.isfile(path):
        raise CheckpointError("checkpoint %s does not exist" % path)
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("meta.json").decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise CheckpointError("%s is not a gluon_resnet checkpoint (%s)" % (path, exc)) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError("%s has format %r, expected %r" % (path, meta.get("format"), FORMAT))
    return meta


def load_checkpoint(path, net, trainer=None, ctx=None, restore_random_state=True):
    """Load a checkpoint into ``net`` (and ``trainer``); return its ``meta``.

    Raises
    ------
    CheckpointError
        If the file is missing or unreadable, or if its parameter names and
        shapes differ from ``net``'s (a checkpoint of another model).
    """
    meta = read_checkpoint_meta(path)
    ours = param_shapes(net)
    theirs = meta["param_shapes"]
    if set(ours) != set(theirs) or any(ours[k] and ours[k] != theirs[k] and 0 not in ours[k]
                                       for k in ours):
        model = meta.get("config", {}).get("model", "another model")
        raise CheckpointError(
            "checkpoint %s holds the parameters of %s, which do not fit this network "
            "(%d parameters there, %d here)" % (path, model, len(theirs), len(ours)))
    work = tempfile.mkdtemp(prefix="gluon_resnet-ckpt-")
    try:
        with zipfile.ZipFile(path) as z:
            z.extractall(work)
        net.load_parameters(os.path.join(work, "model.params"), ctx=ctx)
        states = os.path.join(work, "trainer.states")
        if trainer is not None and os.path.exists(states):
            trainer.load_states(states)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if restore_random_state and "random_state" in meta:
        _set_random_state(meta["random_state"])
    return meta
