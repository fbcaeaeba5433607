"""``torch.save``-d state_dicts (``.pth``, PyTorch >= 1.6) read with numpy, running no pickle code.

Format
------
A zip archive whose members sit under one folder (the file's stem, or
``archive``): ``data.pkl``, a pickle of the ``OrderedDict`` of tensors;
``data/<key>``, one raw storage (a flat array) per key; ``byteorder``
(``little`` or ``big``) and ``version``.  In the pickle each tensor is a call
``torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
requires_grad, backward_hooks)`` and each storage a *persistent id*
``('storage', torch.FloatStorage, key, location, numel)``.

Why no pickle code runs
-----------------------
Unpickling calls whatever global the pickle names, so ``torch.load`` on an
untrusted file can run any code.  ``_StateDictUnpickler`` resolves globals
itself: ``collections.OrderedDict`` and our own stand-ins for
``torch._utils._rebuild_tensor_v2``, ``torch._utils._rebuild_parameter`` and
the storage classes (``torch.FloatStorage``, ``HalfStorage``,
``BFloat16Storage``, ``DoubleStorage``, ``LongStorage``, ``IntStorage``),
which only build numpy arrays.  Any other global (``os.system``, a model
class of a file saved with ``torch.save(model)``, ...) raises
``WeightFileError`` naming it, before anything is called.  Storages are read
from the zip by name, and every tensor's offset, size and strides are checked
against its storage before numpy views it.
"""

import collections
import os
import pickle
import zipfile

import numpy as np

from .decode import WeightFileError, as_int_tuple, decode, itemsize

__all__ = ["read_torch_zip"]

_TORCH_STORAGES = {"FloatStorage": "float32", "HalfStorage": "float16",
                   "BFloat16Storage": "bfloat16", "DoubleStorage": "float64",
                   "LongStorage": "int64", "IntStorage": "int32"}


class _Frozen:
    """Base of the objects the pickle can reach: no ``__dict__``, no attribute assignment.

    A pickle's BUILD opcode sets attributes on any object it holds; on a
    function it could replace ``__defaults__`` for every later load.  What
    ``find_class`` and ``persistent_load`` hand out therefore derives from
    this class, which refuses that (the load then fails with a
    ``WeightFileError``).
    """

    __slots__ = ()

    def __init__(self, **fields):
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError("%s is read-only" % type(self).__name__)


class _StorageType(_Frozen):
    """Stand-in for a ``torch.<Type>Storage`` class named in the pickle."""

    __slots__ = ("name", "dtype")

    def __init__(self, name):
        super().__init__(name=name, dtype=_TORCH_STORAGES[name])


class _Storage(_Frozen):
    """A storage read from the zip: a flat numpy array (bfloat16 already widened)."""

    __slots__ = ("key", "array")

    def __init__(self, key, array):
        super().__init__(key=key, array=array)


class _Function(_Frozen):
    """One of our functions, callable from the pickle but not modifiable by it."""

    __slots__ = ("function",)

    def __init__(self, function):
        super().__init__(function=function)

    def __call__(self, *args):
        return self.function(*args)


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False,
                    backward_hooks=None, metadata=None):
    """Our ``torch._utils._rebuild_tensor_v2``: a copy of the tensor's elements as an array.

    Element ``(i0, i1, ...)`` of the tensor is ``storage[storage_offset +
    i0 * stride[0] + i1 * stride[1] + ...]``.  The last element's index is
    checked against the storage's length before numpy views it.
    """
    if not isinstance(storage, _Storage):
        raise WeightFileError("a tensor's storage is %r, not a storage record of the file."
                              % (type(storage).__name__,))
    size = as_int_tuple(size, "a tensor's size")
    stride = as_int_tuple(stride, "a tensor's stride")
    (offset,) = as_int_tuple((storage_offset,), "a tensor's storage offset")
    if len(size) != len(stride):
        raise WeightFileError("storage %s: size %s and stride %s differ in length."
                              % (storage.key, size, stride))
    flat = storage.array
    count = int(np.prod(size, dtype=np.int64))
    if count == 0:
        return np.zeros(size, dtype=flat.dtype)
    if count > flat.size:
        raise WeightFileError(
            "storage %s holds %d elements, but a tensor of size %s views it with stride %s "
            "(an expanded or overlapping view); re-save the tensor with .contiguous()."
            % (storage.key, flat.size, size, stride))
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise WeightFileError(
            "storage %s holds %d elements, but a tensor of size %s, stride %s and offset %d "
            "reaches element %d." % (storage.key, flat.size, size, stride, offset, last))
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=[s * flat.itemsize for s in stride], writeable=False)
    return np.array(view, order="C")  # a contiguous copy that owns its memory


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    """Our ``torch._utils._rebuild_parameter``: a ``Parameter`` is its data here."""
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _Function(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Function(_rebuild_parameter),
}
_ALLOWED_GLOBALS.update({("torch", name): _StorageType(name) for name in _TORCH_STORAGES})


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a state_dict's ``data.pkl``; every other global is refused.

    ``find_class`` returns only the stand-ins of ``_ALLOWED_GLOBALS``; storages
    arrive as persistent ids and are read from ``archive`` (a ``ZipFile``)
    under ``prefix + "data/<key>"``, once each.
    """

    def __init__(self, file, archive, prefix, byteorder, source):
        super().__init__(file)
        self._archive, self._prefix, self._byteorder = archive, prefix, byteorder
        self._source = source
        self._storages = {}

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[module, name]
        except KeyError:
            pass
        allowed = sorted("%s.%s" % key for key in _ALLOWED_GLOBALS)
        raise WeightFileError(
            "%s: the pickle asks for the global %s.%s, which a state_dict never needs; it was "
            "not loaded, and no code of the file ran.  Allowed globals: %s.  If the file holds "
            "a whole model (torch.save(model)), re-save its weights with "
            "torch.save(model.state_dict(), path)." % (self._source, module, name,
                                                       ", ".join(allowed)))

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and isinstance(pid[4], int) and pid[4] >= 0):
            raise WeightFileError("%s: unexpected persistent id %r in the pickle; expected "
                                  "('storage', <storage type>, key, location, numel)."
                                  % (self._source, pid))
        _, storage_type, key, _location, numel = pid
        if key not in self._storages:
            member = "%sdata/%s" % (self._prefix, key)
            try:
                buffer = self._archive.read(member)
            except KeyError:
                raise WeightFileError("%s: the pickle names storage %r, but the archive has no "
                                      "member %s." % (self._source, key, member)) from None
            size = numel * itemsize(storage_type.dtype)
            if len(buffer) < size:
                raise WeightFileError("%s: storage %s should hold %d %s values (%d bytes) but "
                                      "has %d bytes." % (self._source, key, numel,
                                                         storage_type.dtype, size,
                                                         len(buffer)))
            self._storages[key] = _Storage(
                key, decode(buffer, storage_type.dtype, numel, self._byteorder))
        return self._storages[key]


def _check_state_dict(obj, source):
    """``obj`` if it maps names to arrays; else a ``WeightFileError`` saying what it holds."""
    if isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, np.ndarray)
                                     for k, v in obj.items()):
        return collections.OrderedDict(obj)
    if isinstance(obj, dict):
        nested = [k for k, v in obj.items() if isinstance(v, dict)]
        raise WeightFileError(
            "%s holds a dict with keys %s, not a state_dict (a dict of tensors)%s."
            % (source, ", ".join(map(repr, list(obj)[:8])),
               "; if it is a training checkpoint, save its model part, e.g. "
               "torch.save(checkpoint[%r], path)" % nested[0] if nested else ""))
    raise WeightFileError("%s holds a %s, not a state_dict (a dict of tensors)."
                          % (source, type(obj).__name__))


def read_torch_zip(path):
    """Read a ``torch.save``-d state_dict (zip format) without torch and without pickle code.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.pth`` / ``.pt`` file written by ``torch.save(state_dict, path)``.

    Returns
    -------
    collections.OrderedDict of str -> numpy.ndarray
        Each tensor with its shape (``size``) and dtype: float32, float16,
        float64, int64, int32; bfloat16 becomes float32 (exactly).  The
        arrays are contiguous copies, whatever the tensor's strides were.

    Raises
    ------
    WeightFileError
        Not a zip, no ``data.pkl``, a global other than the allowed ones, a
        storage missing or too short, a tensor reaching outside its storage.
    """
    source = os.fspath(path)
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile as exc:
        with open(source, "rb") as f:
            damaged = f.read(4) == b"PK\x03\x04"
        if damaged:
            raise WeightFileError("%s is damaged or truncated: it starts as a zip archive (a "
                                  "torch.save file) but cannot be read as one (%s); download or "
                                  "save it again." % (source, exc)) from None
        raise WeightFileError("%s is not a zip archive, so not a torch.save file of "
                              "PyTorch >= 1.6." % source) from None
    with archive:
        pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise WeightFileError("%s is a zip archive but not a torch.save file: expected one "
                                  "<folder>/data.pkl member, found %d." % (source, len(pickles)))
        prefix = pickles[0][:-len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in archive.namelist():
            byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise WeightFileError("%s: unknown byte order %r." % (source, byteorder))
        with archive.open(pickles[0]) as file:
            unpickler = _StateDictUnpickler(file, archive, prefix, byteorder, source)
            try:
                obj = unpickler.load()
            except WeightFileError:
                raise
            except Exception as exc:  # a malformed pickle: name the file, keep the cause
                raise WeightFileError("%s: cannot read %s: %s: %s"
                                      % (source, pickles[0], type(exc).__name__, exc)) from exc
    return _check_state_dict(obj, source)
