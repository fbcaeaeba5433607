"""Checkpoints: one file holding everything needed to resume training exactly.

A checkpoint is a zip archive with three members:

- ``model.params``: the network's parameters (``save_parameters``),
- ``trainer.states``: the optimizer state (``Trainer.save_states``),
- ``meta.json``: epoch, batch within the epoch, history, the training callbacks'
  own states under ``callbacks`` (the ``Recorder``'s holds the metric sums of a
  partial epoch; checkpoints from before it kept them as ``partial``),
  configuration, parameter shapes and random states (numpy's and Python's;
  MXNet's follows from the run's seed, see ``batch_seed``).

It is written to a temporary file in the same folder, flushed to disk and
renamed over the old one, then the folder is flushed (``atomic_write``): a
kill or a power cut at any moment leaves the old checkpoint or the new one,
never a half-written one.  Where a checkpoint is asked for, a run folder
means its ``checkpoint.ckpt`` (``checkpoint_file``).
"""

import errno
import hashlib
import json
import os
import random
import shutil
import tempfile
import zipfile

import numpy as np

from ._mxnet import mx

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "read_checkpoint_meta",
           "Checkpoint", "CheckpointError", "SaveError", "atomic_write", "checkpoint_file",
           "remove_temporary_files", "CHECKPOINT_NAME", "TEMPORARY_PREFIX", "batch_seed"]

FORMAT = "gluon_resnet-checkpoint-1"
#: The checkpoint's name in a run folder.
CHECKPOINT_NAME = "checkpoint.ckpt"
#: Temporary files of ``atomic_write`` start with this; a killed writer leaves them behind.
TEMPORARY_PREFIX = ".tmp-"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or belongs to another model."""


class SaveError(OSError):
    """A file of a run could not be written (disk full, read-only folder); the old one is kept.

    Attributes
    ----------
    path : str
        The file that was being written; ``os.path.dirname(path)`` is its folder.
    """

    def __init__(self, message, path):
        super().__init__(message)
        self.path = path


def checkpoint_file(path):
    """``path``, or the ``checkpoint.ckpt`` inside it when ``path`` is a run folder.

    Raises ``CheckpointError`` for a folder without a checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        return path
    inside = os.path.join(path, CHECKPOINT_NAME)
    if not os.path.isfile(inside):
        raise CheckpointError("folder %s holds no %s: give a run folder that has one, or the "
                              "checkpoint file itself" % (path, CHECKPOINT_NAME))
    return inside


def _fsync_folder(folder):
    """Flush a folder's entries (a rename) to disk; a no-op where the file system cannot."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _umask():
    """This process's umask, read without changing it (Linux), else set and restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, write, suffix=""):
    """Call ``write(tmp_path)``, then make the temporary file ``path``, durably.

    The temporary file (``.tmp-*`` + ``suffix``) sits in the folder of
    ``path``; it is flushed to disk, renamed over ``path`` (atomic within one
    file system), and the folder is flushed, so a kill or a power cut at any
    moment leaves the old file or the new one, never a damaged one.  The file
    gets the mode of any new file of the user's (``0o666`` less the umask).

    Raises
    ------
    SaveError
        The folder could not be written (disk full, read-only, ...); the
        message names the file and its folder, and the old file is unchanged.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=suffix, dir=folder)
        os.close(fd)
        write(tmp)
        # mkstemp makes the file 0600; the run's files get the mode any new file of the user's
        # gets (0644 under the usual umask 022), so that a run folder can be shared.
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(folder)
    except SaveError:
        raise
    except OSError as exc:
        raise SaveError("cannot write %s in %s (%s); the %s there before, if any, is unchanged"
                        % (os.path.basename(path), os.path.dirname(path) or ".",
                           exc.strerror or exc, os.path.basename(path)), path) from exc
    finally:
        if tmp is not None:
            try:
                os.remove(tmp)
            except OSError:
                pass  # a read-only folder: nothing was written there either


def remove_temporary_files(folder):
    """Delete what killed ``atomic_write`` calls left in ``folder``; return how many.

    Only for a folder nobody else writes to (a locked run folder).
    """
    try:
        paths = [os.path.join(folder, n) for n in os.listdir(folder)
                 if n.startswith(TEMPORARY_PREFIX)]
    except FileNotFoundError:
        return 0
    for path in paths:
        if os.path.isdir(path):  # the members of a killed save_checkpoint
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    return len(paths)


def param_shapes(net):
    """``{structural name: shape}`` of the network's parameters."""
    return {name: list(p.shape) for name, p in net._collect_params_with_prefix().items()}


# --- random state ------------------------------------------------------------------------
# A checkpoint saves numpy's and Python's global generators.  MXNet 1.9.1 cannot hand out the
# state of its own generator (dropout draws from it), so a Learner given a seed reseeds MXNet
# before every batch from (seed, epoch, batch) (``batch_seed``): a resumed run then draws
# the masks the uninterrupted run drew, and nothing else's random state moves.

def batch_seed(seed, epoch, batch):
    """The seed of MXNet's generators for batch ``batch`` of epoch ``epoch`` of a run."""
    sequence = np.random.SeedSequence(int(seed), spawn_key=(int(epoch), int(batch), MXNET_STREAM))
    return int(sequence.generate_state(1)[0] & 0x7FFFFFFF)


#: The spawn-key slot of MXNet's per-batch seeds (the data streams use 0 and 1).
MXNET_STREAM = 7


def _random_state():
    np_state = np.random.get_state()
    return {"numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]]}


def _set_random_state(state):
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _write_failure(folder, exc):
    """The ``OSError`` behind MXNet's failed write in ``folder`` (a full disk, mostly).

    MXNet says only that a write was incomplete; writing a probe with Python
    gives the system's reason.
    """
    probe = os.path.join(folder, "probe")
    try:
        with open(probe, "wb") as f:
            f.write(bytes(1 << 20))
            f.flush()
            os.fsync(f.fileno())
    except OSError as reason:
        return reason
    finally:
        try:
            os.remove(probe)
        except OSError:
            pass
    return OSError(errno.EIO, str(exc).strip().splitlines()[-1])


# --- saving and loading -------------------------------------------------------------------


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

    def write(tmp):
        # MXNet writes its members only to files: they go to a temporary folder beside the
        # checkpoint, so a kill leaves nothing outside the run folder, and the next run's
        # remove_temporary_files clears it.
        work = tempfile.mkdtemp(prefix=TEMPORARY_PREFIX, dir=os.path.dirname(tmp))
        try:
            try:
                net.save_parameters(os.path.join(work, "model.params"))
                if trainer is not None:
                    trainer.save_states(os.path.join(work, "trainer.states"))
            except mx.base.MXNetError as exc:
                raise _write_failure(work, exc) from exc
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
                z.writestr("meta.json", json.dumps(meta, indent=1))
                for name in ("model.params", "trainer.states"):
                    member = os.path.join(work, name)
                    if os.path.exists(member):
                        z.write(member, name)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    atomic_write(path, write)


class Checkpoint:
    """A checkpoint read into memory: ``meta`` and the members, from one opening of the file.

    Attributes
    ----------
    path : str
    meta : dict
        The ``meta.json`` (epoch, batch, partial sums, history, config, ...).
    """

    def __init__(self, path, meta, members):
        self.path, self.meta, self._members = path, meta, members

    def check_fits(self, net):
        """Raise ``CheckpointError`` naming the first parameter whose name or shape differs."""
        ours, theirs = param_shapes(net), self.meta["param_shapes"]
        model = self.meta.get("config", {}).get("model", "another model")
        missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        if missing or extra:
            raise CheckpointError(
                "checkpoint %s holds the parameters of %s, which do not fit this network "
                "(%d parameters there, %d here; %s)"
                % (self.path, model, len(theirs), len(ours),
                   "'%s' is missing there" % missing[0] if missing
                   else "'%s' is not a parameter here" % extra[0]))
        for name in sorted(ours):
            shape = ours[name]
            if shape and 0 not in shape and shape != theirs[name]:
                raise CheckpointError(
                    "checkpoint %s holds the parameters of %s, which do not fit this network: "
                    "'%s' has shape %s there and %s here"
                    % (self.path, model, name, tuple(theirs[name]), tuple(shape)))

    def weights_digest(self):
        """The SHA-256 (hex) of the parameters' bytes: which weights this checkpoint holds."""
        if "model.params" not in self._members:
            raise CheckpointError("%s was read without its parameters" % self.path)
        return hashlib.sha256(self._members["model.params"]).hexdigest()

    def load_into(self, net, trainer=None, ctx=None, restore_random_state=True):
        """Load the parameters into ``net`` (and the optimizer state into ``trainer``).

        Returns ``meta``; sets the random states saved with it unless told not to.
        """
        if "model.params" not in self._members:
            raise CheckpointError("%s was read without its parameters" % self.path)
        self.check_fits(net)
        work = tempfile.mkdtemp(prefix="gluon_resnet-ckpt-")
        try:
            for name, data in self._members.items():
                with open(os.path.join(work, name), "wb") as f:
                    f.write(data)
            net.load_parameters(os.path.join(work, "model.params"), ctx=ctx)
            if trainer is not None and "trainer.states" in self._members:
                trainer.load_states(os.path.join(work, "trainer.states"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if restore_random_state and "random_state" in self.meta:
            _set_random_state(self.meta["random_state"])
        return self.meta


def read_checkpoint(path, members=True):
    """Read the checkpoint at ``path`` once, with clear errors for bad files.

    ``members=False`` reads only ``meta.json`` (the result cannot load).

    ``path`` may be a run folder: its ``checkpoint.ckpt`` is read.

    Raises
    ------
    CheckpointError
        The file is missing, is not a zip archive (or a damaged one), has no
        ``meta.json`` or no ``model.params``, or carries another format tag.
    """
    path = checkpoint_file(path)
    if not os.path.isfile(path):
        raise CheckpointError("checkpoint %s does not exist" % path)
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("meta.json").decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                found = meta.get("format") if isinstance(meta, dict) else None
                raise CheckpointError("%s has format %r, expected %r (a gluon_resnet checkpoint)"
                                      % (path, found, FORMAT))
            wanted = ("model.params", "trainer.states") if members else ()
            names = z.namelist()
            content = {name: z.read(name) for name in wanted if name in names}
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        if isinstance(exc, zipfile.BadZipFile) and _starts_as_zip(path):
            raise CheckpointError("%s is damaged or truncated: it starts as a zip archive but "
                                  "cannot be read as one (%s)" % (path, exc)) from None
        raise CheckpointError("%s is not a gluon_resnet checkpoint (%s)" % (path, exc)) from None
    if "model.params" not in names:
        raise CheckpointError("%s is not a complete gluon_resnet checkpoint: it has no "
                              "model.params" % path)
    return Checkpoint(path, meta, content)


def _starts_as_zip(path):
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def read_checkpoint_meta(path):
    """The ``meta.json`` of a checkpoint (see ``read_checkpoint``)."""
    return read_checkpoint(path, members=False).meta


def load_checkpoint(path, net, trainer=None, ctx=None, restore_random_state=True):
    """Load a checkpoint into ``net`` (and ``trainer``); return its ``meta``.

    Raises
    ------
    CheckpointError
        If the file is missing or unreadable, or if its parameter names and
        shapes differ from ``net``'s (a checkpoint of another model).
    """
    return read_checkpoint(path).load_into(net, trainer, ctx, restore_random_state)
