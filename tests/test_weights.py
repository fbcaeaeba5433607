"""The ``.pth`` reader on files this test writes itself, without PyTorch: tensors that share a
storage, start at an offset and step through it with strides of their own."""

import collections
import pickle
import zipfile

import numpy as np
import pytest

from gluon_resnet.weights import WeightFileError, read_state_dict, read_torch_zip


class _Global:
    """A global that the pickle names by module and name (``torch._utils._rebuild_tensor_v2``)
    without importing it."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):
        raise AssertionError("written, never called")


class _Storage:
    """One storage of the file: ``values``, saved as ``archive/data/<key>``."""

    def __init__(self, key, kind, values):
        self.key, self.kind, self.values = key, kind, values


class _Tensor:
    """A tensor as ``torch.save`` pickles it: a call of ``_rebuild_tensor_v2``."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return (_Global("torch._utils", "_rebuild_tensor_v2"),
                (self.storage, self.offset, self.size, self.stride, False,
                 collections.OrderedDict()))


class _TorchPickler(pickle._Pickler):
    """Pickles ``_Global`` as a GLOBAL opcode and a ``_Storage`` as torch's persistent id
    ``('storage', torch.<Kind>Storage, key, 'cpu', numel)``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_global(self, obj):
        self.write(pickle.GLOBAL + ("%s\n%s\n" % (obj.module, obj.name)).encode("ascii"))

    dispatch[_Global] = _save_global

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", _Global("torch", obj.kind), obj.key, "cpu", len(obj.values))
        return None


def _write_pth(path, state, storages):
    """``path``: a zip as ``torch.save(state)`` writes it, with the raw bytes of ``storages``
    (key -> little-endian bytes)."""
    import io

    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            archive.writestr("archive/data/%s" % key, raw)
        archive.writestr("archive/version", "3\n")


def _element(values, offset, size, stride):
    """The tensor's elements by their definition: ``(i, j, ...)`` is
    ``values[offset + i * stride[0] + j * stride[1] + ...]``."""
    out = np.empty(size, dtype=np.asarray(values).dtype)
    for index in np.ndindex(*size):
        out[index] = values[offset + sum(i * s for i, s in zip(index, stride))]
    return out


#: name -> (storage key, offset, size, stride)
VIEWS = {
    "conv.weight": ("0", 0, (4, 5), (5, 1)),        # the whole storage, row by row
    "conv.transposed": ("0", 2, (3, 4), (1, 5)),    # shares it: offset, column-major strides
    "conv.every_fourth": ("0", 7, (3,), (4,)),      # shares it: a strided slice
    "bn.num_batches": ("1", 1, (2, 2), (1, 2)),     # int64, offset and transposed
    "fc.half": ("2", 3, (2, 1), (2, 1)),            # float16, offset, a step of two
    "fc.bf16": ("3", 1, (3,), (1,)),                # bfloat16 (widened to float32), offset
}


def _storages():
    floats = np.arange(20, dtype=np.float32) * 0.5 - 3
    longs = np.arange(6, dtype=np.int64) * 7 - 3
    halves = np.array([0.5, -1, 2, 4, 8, -16, 32], dtype=np.float16)
    bf16 = np.array([1.5, -2.0, 0.25, 3.0], dtype=np.float32)  # exact in bfloat16
    values = {"0": (floats, "FloatStorage", floats.tobytes()),
              "1": (longs, "LongStorage", longs.tobytes()),
              "2": (halves, "HalfStorage", halves.tobytes()),
              "3": (bf16, "BFloat16Storage",
                    (bf16.view(np.uint32) >> 16).astype("<u2").tobytes())}
    return values


def test_shared_storages_offsets_and_strides_are_read_as_defined(tmp_path):
    values = _storages()
    storages = {key: _Storage(key, kind, array) for key, (array, kind, _) in values.items()}
    state = collections.OrderedDict(
        (name, _Tensor(storages[key], offset, size, stride))
        for name, (key, offset, size, stride) in VIEWS.items())
    path = tmp_path / "hand.pth"
    _write_pth(path, state, {key: raw for key, (_, _, raw) in values.items()})
    read = read_state_dict(path)
    assert list(read) == list(VIEWS)
    for name, (key, offset, size, stride) in VIEWS.items():
        expected = _element(values[key][0], offset, size, stride)
        assert read[name].shape == size and read[name].flags.c_contiguous, name
        assert read[name].dtype == (np.float32 if key == "3" else expected.dtype), name
        np.testing.assert_array_equal(read[name], expected, err_msg=name)
    # Spelled out for two of them, so that a mistake in _element cannot hide one in the reader.
    np.testing.assert_array_equal(read["conv.every_fourth"], [0.5, 2.5, 4.5])
    np.testing.assert_array_equal(read["fc.bf16"], [-2.0, 0.25, 3.0])


@pytest.mark.parametrize("offset, size, stride, last", [(17, (4,), (1,), 20),
                                                         (1, (2, 3), (1, 10), 22)])
def test_a_view_that_reaches_past_its_storage_is_refused(tmp_path, offset, size, stride, last):
    floats = np.arange(20, dtype=np.float32)
    storage = _Storage("0", "FloatStorage", floats)
    path = tmp_path / "past.pth"
    _write_pth(path, {"w": _Tensor(storage, offset, size, stride)}, {"0": floats.tobytes()})
    with pytest.raises(WeightFileError, match="holds 20 elements, but a tensor of size .* "
                                              "reaches element %d" % last):
        read_torch_zip(path)
