"""Pretrained weights in torchvision's layout, read without PyTorch and without running pickle code.

``resnet18_v1`` ... ``resnet152_v1``, ``resnext50_32x4d``, ``resnext101_32x8d``,
``wide_resnet50_2`` and ``wide_resnet101_2`` have torchvision's layout
(bias-free convolutions, BN after each, stride on the 3x3 convolution,
projection shortcuts only where the shape changes), so torchvision's
ImageNet weights fit them tensor for tensor.  This module reads such weight files and loads
them; it never imports torch.

File formats
------------
``.pth`` (``torch.save(model.state_dict(), path)``, PyTorch >= 1.6)
    A zip archive whose members sit under one folder (the file's stem, or
    ``archive``): ``data.pkl``, a pickle of the ``OrderedDict`` of tensors;
    ``data/<key>``, one raw storage (a flat little-endian array) per key;
    ``byteorder`` (``little`` or ``big``) and ``version``.  In the pickle
    each tensor is a call ``torch._utils._rebuild_tensor_v2(storage,
    storage_offset, size, stride, requires_grad, backward_hooks)`` and each
    storage a *persistent id* ``('storage', torch.FloatStorage, key,
    location, numel)``.
``.safetensors``
    An 8-byte little-endian header length ``n``, ``n`` bytes of JSON mapping
    each name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets
    into the data that follows; an optional ``__metadata__`` entry holds
    strings), then the raw little-endian data in C order.

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

Where it sits
-------------
Below ``models``: this module knows networks only by their structure (a
``features`` sequence with a 7x7 stem and stages of ``BasicBlockV1`` or
``BottleneckV1`` blocks, an ``output`` dense layer), so that
``models.get_model(name, pretrained=PATH)`` can call ``load_pretrained``.

Key names
---------
torchvision's ``conv1``, ``bn1``, ``layer<k>.<i>.conv<j>`` / ``bn<j>``,
``layer<k>.<i>.downsample.0`` (convolution) / ``.1`` (BN) and ``fc`` map onto
our stem convolution and BN, block ``i`` of stage ``k``'s ``conv<j>`` /
``bn<j>``, its projection shortcut and the ``output`` layer; BN's ``weight``
and ``bias`` are our ``gamma`` and ``beta``.  ``num_batches_tracked`` (int64
counters used only in training) is ignored.
"""

import collections
import collections.abc
import dataclasses
import json
import os
import pickle
import re
import warnings
import zipfile

import numpy as np

from ._mxnet import mx
from mxnet.gluon import nn

from .arrays import in_caller_mode
from .blocks import BasicBlockV1, BottleneckV1

__all__ = ["SUPPORTED_MODELS", "TORCHVISION_RESNETS", "TORCHVISION_VARIANTS", "WeightFileError",
           "WeightMismatchError",
           "LoadReport", "read_state_dict", "read_torch_zip", "read_safetensors",
           "torchvision_key_map", "load_torchvision_weights", "load_pretrained"]

TORCHVISION_RESNETS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
"""torchvision's ``resnet<depth>``: depth -> (block kind, blocks per stage).

The networks whose weight files this module reads; ``models.RESNET_SPEC`` has
the same kinds and counts (a test checks), but this module sits below
``models`` and does not import it.
"""

#: torchvision's ResNeXt and wide ResNets: the same layout, with grouped or wider 3x3
#: convolutions in the bottleneck (registered under torchvision's names).
TORCHVISION_VARIANTS = ("resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2",
                        "wide_resnet101_2")

SUPPORTED_MODELS = tuple("resnet%d_v1" % depth for depth in sorted(TORCHVISION_RESNETS)) \
    + TORCHVISION_VARIANTS
"""The registered networks whose parameters have torchvision's layout."""


class WeightFileError(ValueError):
    """The file is not a weight file this module reads, or asks for code to run."""


class WeightMismatchError(ValueError):
    """The weights do not fit the network: keys missing or unexpected, or shapes differ."""


# ---------------------------------------------------------------------------
# Raw arrays: numpy has no bfloat16, so it is widened to float32 (exactly).
# ---------------------------------------------------------------------------

def _bfloat16_to_float32(raw):
    """``uint16`` bit patterns of bfloat16 values -> the same values as ``float32``."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def _decode(buffer, dtype_name, count, byteorder="little"):
    """``count`` elements of ``dtype_name`` from the start of ``buffer``, as a 1-D array."""
    raw_dtype = np.dtype(np.uint16 if dtype_name == "bfloat16" else dtype_name)
    raw_dtype = raw_dtype.newbyteorder("<" if byteorder == "little" else ">")
    flat = np.frombuffer(buffer, dtype=raw_dtype, count=count)
    flat = flat.astype(raw_dtype.newbyteorder("="), copy=False)
    return _bfloat16_to_float32(flat) if dtype_name == "bfloat16" else flat


# ---------------------------------------------------------------------------
# torch.save's zip format, through a restricted unpickler.
# ---------------------------------------------------------------------------

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


def _as_int_tuple(value, what):
    if not isinstance(value, tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise WeightFileError("%s must be a tuple of non-negative integers, got %r."
                              % (what, value))
    return value


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
    size = _as_int_tuple(size, "a tensor's size")
    stride = _as_int_tuple(stride, "a tensor's stride")
    (offset,) = _as_int_tuple((storage_offset,), "a tensor's storage offset")
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
            itemsize = 2 if storage_type.dtype == "bfloat16" else np.dtype(
                storage_type.dtype).itemsize
            if len(buffer) < numel * itemsize:
                raise WeightFileError("%s: storage %s should hold %d %s values (%d bytes) but "
                                      "has %d bytes." % (self._source, key, numel,
                                                         storage_type.dtype, numel * itemsize,
                                                         len(buffer)))
            self._storages[key] = _Storage(
                key, _decode(buffer, storage_type.dtype, numel, self._byteorder))
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


# ---------------------------------------------------------------------------
# safetensors.
# ---------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
                       "I64": "int64", "I32": "int32"}
_MAX_HEADER = 100 * 2 ** 20  # the reference implementation's limit


def _safetensors_header_length(head, file_size):
    """The JSON header's length if ``head`` (the first 9 bytes) starts a safetensors file."""
    if len(head) < 9:
        return None
    n = int.from_bytes(head[:8], "little")
    if n < 2 or n > min(_MAX_HEADER, file_size - 8) or head[8:9] != b"{":
        return None
    return n


def read_safetensors(path):
    """Read a ``.safetensors`` file with numpy.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    collections.OrderedDict of str -> numpy.ndarray
        Each tensor in the header's order, with its ``shape``; F32, F16, F64,
        I64 and I32 keep their dtype, BF16 becomes float32 (exactly).

    Raises
    ------
    WeightFileError
        A bad header, an unsupported dtype, or data offsets that do not match
        the shape or leave the file.
    """
    source = os.fspath(path)
    with open(source, "rb") as f:
        blob = f.read()
    n = _safetensors_header_length(blob[:9], len(blob))
    if n is None:
        raise WeightFileError("%s is not a safetensors file (its first 8 bytes are not the "
                              "length of a JSON header that follows)." % source)
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WeightFileError("%s: the safetensors header is not JSON: %s"
                              % (source, exc)) from None
    if not isinstance(header, dict):
        raise WeightFileError("%s: the safetensors header is not a JSON object." % source)
    data = memoryview(blob)[8 + n:]
    state = collections.OrderedDict()
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype_code, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise WeightFileError("%s: tensor %r: the header entry %r lacks dtype, shape or "
                                  "data_offsets." % (source, name, entry)) from None
        if dtype_code not in _SAFETENSORS_DTYPES:
            raise WeightFileError("%s: tensor %r has dtype %r; readable: %s."
                                  % (source, name, dtype_code, ", ".join(_SAFETENSORS_DTYPES)))
        dtype = _SAFETENSORS_DTYPES[dtype_code]
        shape = _as_int_tuple(tuple(shape) if isinstance(shape, list) else shape,
                              "%s: tensor %r's shape" % (source, name))
        count = int(np.prod(shape, dtype=np.int64))
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if not (isinstance(begin, int) and isinstance(end, int)
                and 0 <= begin <= end <= len(data) and end - begin == count * itemsize):
            raise WeightFileError("%s: tensor %r of shape %s and dtype %s needs %d bytes, but its "
                                  "data_offsets are [%r, %r] in %d bytes of data."
                                  % (source, name, shape, dtype_code, count * itemsize, begin,
                                     end, len(data)))
        state[name] = _decode(data[begin:end], dtype, count).reshape(shape).copy()
    return state


def read_state_dict(path):
    """Read a weight file, ``.pth`` (torch zip) or ``.safetensors``, into numpy arrays.

    The format is recognised from the file's first bytes, not its name.

    Parameters
    ----------
    path : str or os.PathLike
        A ``torch.save``-d state_dict (PyTorch >= 1.6) or a safetensors file.

    Returns
    -------
    collections.OrderedDict of str -> numpy.ndarray
        The tensors by name, each with its shape; bfloat16 becomes float32.

    Raises
    ------
    WeightFileError
        The file is neither, is a legacy (pre-1.6) torch file, or is unsafe
        or damaged; the message says which and what to do.
    """
    source = os.fspath(path)
    with open(source, "rb") as f:
        head = f.read(9)
        f.seek(0, os.SEEK_END)
        size = f.tell()
    if head.startswith(b"PK\x03\x04"):
        return read_torch_zip(source)
    if _safetensors_header_length(head, size) is not None:
        return read_safetensors(source)
    if head[:1] == b"\x80" or size > 262 and _is_tar(source):
        raise WeightFileError(
            "%s is in PyTorch's legacy (pre-1.6) format, which this reader refuses: re-save it "
            "with a current PyTorch, e.g. torch.save(torch.load(old, weights_only=True), new)."
            % source)
    raise WeightFileError("%s is neither a PyTorch .pth file (a zip archive) nor a "
                          ".safetensors file." % source)


def _is_tar(source):
    with open(source, "rb") as f:
        f.seek(257)
        return f.read(5) == b"ustar"


# ---------------------------------------------------------------------------
# torchvision's names -> our parameters.
# ---------------------------------------------------------------------------

_LAYER_PARAMS = {nn.Conv2D: (("weight", "weight"),),
                 nn.BatchNorm: (("weight", "gamma"), ("bias", "beta"),
                                ("running_mean", "running_mean"),
                                ("running_var", "running_var")),
                 nn.Dense: (("weight", "weight"), ("bias", "bias"))}
_FAMILY_ERROR = ("torchvision's ResNet weights fit only the networks of its layout (%s: 7x7 stem, "
                 "post-activation blocks, shortcut 'B', stride on the 3x3 convolution); %s")


def _family_layout(net):
    """``(kind, blocks per stage, stem conv, stem BN, stages)`` of a torchvision-layout ``net``.

    Read from the structure alone: ``net.features`` (stem conv, BN, ReLU,
    max-pool, stages of blocks, ...) and ``net.output`` (a ``Dense``), as
    ``models.ResNet`` builds them.
    """
    features, output = getattr(net, "features", None), getattr(net, "output", None)
    if not (isinstance(features, nn.HybridSequential) and len(features) > 4
            and isinstance(output, nn.Dense)):
        raise ValueError(_FAMILY_ERROR % (", ".join(SUPPORTED_MODELS),
                                          "got a %s." % type(net).__name__))
    layers = list(features)
    stages = [layer for layer in layers if isinstance(layer, nn.HybridSequential)]
    blocks = [block for stage in stages for block in stage]
    kinds = {type(block) for block in blocks}
    stem = layers[0]
    problem = None
    if not (isinstance(stem, nn.Conv2D) and stem._kwargs["kernel"] == (7, 7)
            and isinstance(layers[3], nn.MaxPool2D)):
        problem = "this network has another stem."
    elif not kinds <= {BasicBlockV1, BottleneckV1} or len(kinds) != 1:
        problem = "this network's blocks are %s." % ", ".join(sorted(k.__name__ for k in kinds))
    elif any(block.shortcut_kind != "B" for block in blocks):
        problem = "this network has other shortcuts."
    elif any(block.stride > 1 and block.convs[block.kernels.index(3)]._kwargs["stride"] == (1, 1)
             for block in blocks):
        problem = "this network strides on the 1x1 convolution (stride_in_1x1)."
    if problem:
        raise ValueError(_FAMILY_ERROR % (", ".join(SUPPORTED_MODELS), problem))
    kind = "bottleneck" if kinds == {BottleneckV1} else "basic"
    return kind, tuple(len(stage) for stage in stages), stem, layers[1], stages


def _arch_name(kind, counts, groups=1, base_width=64):
    """``'resnet50_v1'`` for ('bottleneck', (3, 4, 6, 3)); a description if no depth matches.

    ``groups`` and ``base_width`` of the bottlenecks' 3x3 convolution give
    torchvision's other names: ``resnext50_32x4d`` (32 groups of width 4),
    ``wide_resnet50_2`` (base width 128).
    """
    for depth, (spec_kind, spec_counts) in TORCHVISION_RESNETS.items():
        if (spec_kind, tuple(spec_counts)) == (kind, tuple(counts)):
            if groups > 1:
                return "resnext%d_%dx%dd" % (depth, groups, base_width)
            if base_width != 64 and base_width % 64 == 0:
                return "wide_resnet%d_%d" % (depth, base_width // 64)
            if base_width == 64:
                return "resnet%d_v1" % depth
    return "a ResNet of %s blocks %s%s" % (
        kind, "-".join(map(str, counts)),
        "" if (groups, base_width) == (1, 64) else " (groups %d, base width %d)"
        % (groups, base_width))


def _file_arch(state):
    """The architecture a torchvision state_dict describes.

    Depth from its ``layer<k>.<i>.conv<j>`` names; for bottlenecks, groups
    and base width from the shapes of the first block's convolutions (a
    ResNeXt's 3x3 weight is ``(width, width / groups, 3, 3)``).
    """
    blocks, bottleneck = {}, False
    for key in state:
        match = re.match(r"layer(\d+)\.(\d+)\.conv(\d+)\.weight$", key)
        if match:
            stage, index, conv = map(int, match.groups())
            blocks[stage] = max(blocks.get(stage, 0), index + 1)
            bottleneck |= conv == 3
    if not blocks:
        return None
    counts = tuple(blocks.get(k, 0) for k in range(1, max(blocks) + 1))
    groups, base_width = 1, 64
    conv1, conv2 = state.get("layer1.0.conv1.weight"), state.get("layer1.0.conv2.weight")
    if bottleneck and conv1 is not None and conv2 is not None \
            and len(np.shape(conv2)) == 4 and np.shape(conv2)[1]:
        width = np.shape(conv1)[0]  # stage 1: 64 * base_width / 64 * groups
        groups = max(1, width // np.shape(conv2)[1])
        base_width = max(1, width // groups)
    return _arch_name("bottleneck" if bottleneck else "basic", counts, groups, base_width)


def torchvision_key_map(net):
    """torchvision's state_dict keys of ``net``, each with the parameter it fills.

    Parameters
    ----------
    net : ResNet
        ``resnet18_v1`` ... ``resnet152_v1`` (any ``num_classes`` and input channels).

    Returns
    -------
    collections.OrderedDict of str -> mxnet.gluon.Parameter
        In torchvision's order, for example ``'conv1.weight'`` -> the stem
        convolution's ``(64, C, 7, 7)`` weight, ``'layer2.0.downsample.1.weight'``
        -> the gamma of stage 2's first shortcut BN, ``'fc.bias'`` -> the
        ``(num_classes,)`` bias of ``net.output``.

    Raises
    ------
    ValueError
        ``net`` is not one of the torchvision-layout networks.
    """
    _, _, stem_conv, stem_bn, stages = _family_layout(net)
    layers = [("conv1", stem_conv), ("bn1", stem_bn)]
    for k, stage in enumerate(stages, 1):
        for i, block in enumerate(stage):
            for j, (conv, bn) in enumerate(zip(block.convs, block.bns), 1):
                layers += [("layer%d.%d.conv%d" % (k, i, j), conv),
                           ("layer%d.%d.bn%d" % (k, i, j), bn)]
            if block.shortcut is not None:
                layers += [("layer%d.%d.downsample.%d" % (k, i, n), layer)
                           for n, layer in enumerate(block.shortcut)]
    layers.append(("fc", net.output))
    key_map = collections.OrderedDict()
    for prefix, layer in layers:
        for theirs, ours in _LAYER_PARAMS[type(layer)]:
            key_map["%s.%s" % (prefix, theirs)] = getattr(layer, ours)
    return key_map


# ---------------------------------------------------------------------------
# Loading.
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What ``load_torchvision_weights`` did.

    Attributes
    ----------
    source : str
        The file read (or ``'<state_dict>'``).
    network : str
        The architecture loaded into, e.g. ``'resnet18_v1'``.
    loaded : int
        Tensors copied into the network.
    values : int
        Numbers copied (the parameter count, BN statistics included).
    skipped : tuple of str
        Keys of the file left out on purpose (the classifier when skipped).
    ignored : tuple of str
        Keys with no counterpart that carry no weights (``num_batches_tracked``).
    notices : tuple of str
        Anything converted on the way (the stem summed to one input channel).
    """

    source: str
    network: str
    loaded: int
    values: int
    skipped: tuple = ()
    ignored: tuple = ()
    notices: tuple = ()

    def __str__(self):
        lines = ["loaded %d tensors (%s values) from %s into %s"
                 % (self.loaded, format(self.values, ","), self.source, self.network)]
        if self.skipped:
            lines.append("left out: %s" % ", ".join(self.skipped))
        if self.ignored:
            lines.append("ignored %d num_batches_tracked counters" % len(self.ignored))
        lines += ["notice: %s" % notice for notice in self.notices]
        return "\n".join(lines)


def _short_list(keys, limit=6):
    keys = list(keys)
    more = " and %d more" % (len(keys) - limit) if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _stem_for(weight, target_channels, key):
    """Fit the file's stem weight ``(64, c, 7, 7)`` to ``target_channels`` input channels."""
    have = weight.shape[1]
    if target_channels in (0, have):
        return weight, None
    if target_channels == 1:
        notice = ("%s: the file's %d-channel filters were summed over the input channels for "
                  "the 1-channel network (as timm does), so a grey image x gives the response "
                  "the RGB image (x, x, x) gives." % (key, have))
        return weight.sum(axis=1, keepdims=True), notice
    raise WeightMismatchError(
        "%s has %d input channels in the file and %d in the network; only a 1-channel "
        "network can be fitted (by summing the filters)." % (key, have, target_channels))


def load_torchvision_weights(net, path, *, skip_classifier=False, in_channels=None):
    """Load torchvision ResNet weights (``.pth`` or ``.safetensors``) into ``net``.

    Nothing is loaded unless everything fits: keys and shapes are checked
    first.  Parameters that are not initialised yet, or whose input channels
    are still deferred, are initialised from the file, on the context they
    were (or, with no ``initialize`` call yet, the CPU).

    Parameters
    ----------
    net : ResNet
        ``resnet18_v1`` ... ``resnet152_v1`` from ``get_model``; the depth
        must match the file's.
    path : str, os.PathLike or mapping
        A weight file for ``read_state_dict``, or its result.
    skip_classifier : bool, default False
        Leave ``fc.weight`` and ``fc.bias`` out (fine-tuning with a new output
        layer of any size); ``net.output`` keeps its own values.
    in_channels : int, optional
        Input channels of the network, for a network built with
        ``in_channels=0`` whose stem is not shaped yet: 1 sums the stem's RGB
        filters (shape ``(64, 3, 7, 7) -> (64, 1, 7, 7)``), 3 or None keeps
        them.  When the network knows its input channels they must agree.

    Returns
    -------
    LoadReport
        Counts, keys left out and ignored, and notices; notices are also
        issued as ``UserWarning``.

    Raises
    ------
    WeightMismatchError
        Keys missing or unexpected (the message names them and the depth the
        file is for) or a shape that differs (naming the key and both shapes).
    WeightFileError
        The file cannot be read safely (see ``read_state_dict``).
    ValueError
        ``net`` is not a torchvision-layout ResNet.
    """
    if isinstance(path, collections.abc.Mapping):
        state, source = collections.OrderedDict(path), "<state_dict>"
    else:
        state, source = read_state_dict(path), os.fspath(path)
    report = _load(net, state, source, skip_classifier, in_channels)
    for notice in report.notices:
        warnings.warn(notice, UserWarning, stacklevel=2)
    return report


def _load(net, state, source, skip_classifier, in_channels):
    """``load_torchvision_weights`` on a state_dict already read; issues no warnings."""
    kind, counts, _, _, stages = _family_layout(net)
    first = stages[0][0]
    network = _arch_name(kind, counts, first.groups, first.base_width)
    key_map = torchvision_key_map(net)
    classifier = {"fc.weight", "fc.bias"}
    skipped = tuple(k for k in key_map if k in classifier) if skip_classifier else ()
    wanted = [k for k in key_map if k not in skipped]
    ignored = tuple(k for k in state if k.endswith("num_batches_tracked") and k not in key_map)
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in key_map and k not in ignored
                  and not (skip_classifier and k in classifier)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("%d keys of %s are missing from the file (%s)"
                         % (len(missing), network, _short_list(missing)))
        if unexpected:
            parts.append("%d keys of the file have no place in it (%s)"
                         % (len(unexpected), _short_list(unexpected)))
        file_arch = _file_arch(state)
        hint = ""
        if file_arch and file_arch != network:
            hint = "  The file holds weights for %s; build that network instead." % file_arch
        raise WeightMismatchError("%s does not fit %s: %s.%s"
                                  % (source, network, "; ".join(parts), hint))

    target_channels = in_channels
    stem_shape = _shape(key_map["conv1.weight"])
    if stem_shape and stem_shape[1]:
        if in_channels not in (None, stem_shape[1]):
            raise ValueError("in_channels=%r, but the network's stem takes %d channels."
                             % (in_channels, stem_shape[1]))
        target_channels = stem_shape[1]
    notices, arrays, mismatched = [], {}, []
    for key in wanted:
        array = np.asarray(state[key])
        if key == "conv1.weight" and array.ndim == 4 and target_channels is not None:
            array, notice = _stem_for(array, target_channels, key)
            if notice:
                notices.append(notice)
        param = key_map[key]
        expected = _shape(param)
        if len(expected) != array.ndim or any(e not in (0, a)
                                              for e, a in zip(expected, array.shape)):
            mismatched.append("%s: file %s, network %s"
                              % (key, tuple(array.shape), _shape_text(expected)))
        arrays[key] = array
    if mismatched:
        hint = ""
        if any(m.startswith("fc.") for m in mismatched):
            hint = "  For a new output layer, pass skip_classifier=True."
        raise WeightMismatchError("%s does not fit %s: %d shapes differ (%s).%s"
                                  % (source, network, len(mismatched),
                                     "; ".join(mismatched[:6]), hint))

    values = 0
    for key, array in arrays.items():
        param = key_map[key]
        data = in_caller_mode(mx.nd.array(array, dtype=param.dtype or np.float32))
        # Block.load_parameters' own path: fills deferred shapes, keeps the context.
        param._load_init(data, None)
        values += array.size
    return LoadReport(source, network, len(arrays), values, skipped, ignored, tuple(notices))


def _shape(param):
    """``param``'s shape, 0 where it is not known yet (numpy mode writes -1 there)."""
    return tuple(max(d, 0) for d in param.shape or ())


def _shape_text(shape):
    """``(64, ?, 7, 7)`` for a shape whose input channels are still unknown."""
    dims = ["?" if d == 0 else str(d) for d in shape]
    return "(%s)" % (dims[0] + "," if len(dims) == 1 else ", ".join(dims))


def load_pretrained(net, path, *, skip_classifier=None, ctx=None, init=None):
    """Initialise ``net`` and load torchvision weights: what ``get_model(..., pretrained=)`` does.

    The network is initialised first (so a skipped classifier gets fresh
    values), then loaded with ``load_torchvision_weights``; if any shape is
    still deferred afterwards, one forward pass on zeros settles it.

    Parameters
    ----------
    net : ResNet
        An uninitialised ``resnet18_v1`` ... ``resnet152_v1`` of the file's
        depth (any ``num_classes``; ``in_channels=1`` sums the stem's RGB
        filters, with a notice).
    path : str or os.PathLike
        A ``.pth`` or ``.safetensors`` file of torchvision's
        ``resnet<depth>`` of the same depth.
    skip_classifier : bool, optional
        Leave out ``fc``.  By default it is left out exactly when the file's
        classifier has another number of classes than ``net.output``
        (fine-tuning), with a notice.
    ctx : mxnet.Context or list, optional
        Where to initialise; default the CPU.
    init : mxnet.init.Initializer, optional
        For what the file does not fill (a skipped classifier); default
        MXNet's (uniform in [-0.07, 0.07]).

    Returns
    -------
    ResNet
        ``net``, initialised with the file's weights; ``(N, C, H, W) -> (N,
        num_classes)``.  Its ``pretrained_report`` attribute holds the
        ``LoadReport``; its notices are also issued as ``UserWarning``.

    Raises
    ------
    WeightMismatchError, WeightFileError, ValueError
        See ``load_torchvision_weights``.
    """
    _family_layout(net)  # another network: refused before anything is read
    net.initialize(init or mx.init.Uniform(), ctx=ctx)
    state = read_state_dict(path)
    notices = []
    if skip_classifier is None:
        theirs = state.get("fc.weight")
        ours = net.output.weight.shape
        skip_classifier = theirs is not None and theirs.shape[0] != ours[0]
        if skip_classifier:
            notices.append("fc left out: the file's classifier has %d classes, the network %d; "
                           "net.output keeps its fresh initialisation."
                           % (theirs.shape[0], ours[0]))
    report = _load(net, state, os.fspath(path), skip_classifier, None)
    report = dataclasses.replace(report, notices=tuple(notices) + report.notices)
    for notice in report.notices:
        warnings.warn(notice, UserWarning, stacklevel=2)
    if any(0 in (_shape(p) or (0,)) for p in net.collect_params().values()):
        channels = _shape(net.features[0].weight)[1] or 3
        net(in_caller_mode(mx.nd.zeros((1, channels, 32, 32),
                                       ctx=net.output.weight.list_ctx()[0])))
    net.pretrained_report = report
    return net
