"""weights/: the .pth and .safetensors readers, without MXNet.

Two references: files written here from numpy arrays and pickles crafted byte by byte
(which must be refused unrun), and, where PyTorch is installed (the ``torch`` fixture of
conftest.py), files written by ``torch.save``, read back value by value.
"""

import ast
import collections
import io
import json
import os
import pickle
import struct
import sys
import zipfile

import numpy as np
import pytest

from gluon_resnet.pretrained import get_model, load_torchvision_weights
from gluon_resnet.weights import WeightFileError, read_state_dict, read_torch_zip

from helpers import write_safetensors


def test_read_pth_matches_torch_for_every_dtype_and_layout(torch, tmp_path):
    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5) / 7
    state = {
        "contiguous": base.clone(),
        "transposed": base.permute(2, 0, 1),          # strides (1, 20, 5)
        "offset": base.reshape(-1)[13:33].reshape(4, 5),  # storage offset 13, shares storage
        "every_other": base[:, ::2, 1:],              # strides (20, 10, 1), offset 1
        "half": base[1].half().t(),                   # float16, transposed, offset 20
        "bfloat16": (base - 3).to(torch.bfloat16),
        "float64": base.double(),
        "count": torch.tensor(12345678901, dtype=torch.int64),
        "empty": torch.zeros(0, 3),
        "parameter": torch.nn.Parameter(base[2, 1].clone()),  # pickled via _rebuild_parameter
    }
    path = tmp_path / "mixed.pth"
    torch.save(state, path)
    read = read_state_dict(path)
    assert list(read) == list(state)
    for name, tensor in state.items():
        tensor = tensor.detach()
        expected = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
        assert read[name].shape == tuple(tensor.shape), name
        assert read[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(read[name], expected, err_msg=name)
        assert read[name].flags.c_contiguous


def test_read_safetensors_matches_the_arrays(tmp_path):
    arrays = {"a": np.random.randn(3, 4).astype(np.float32),
              "b": np.arange(6, dtype=np.int64).reshape(2, 3),
              "c": np.random.randn(5).astype(np.float16)}
    path = tmp_path / "w.safetensors"
    write_safetensors(path, arrays)
    read = read_state_dict(path)
    assert list(read) == list(arrays)
    for name, array in arrays.items():
        assert read[name].dtype == array.dtype
        np.testing.assert_array_equal(read[name], array)


def test_read_safetensors_bfloat16(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 0.0], dtype=np.float32)
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"x": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + raw)
    np.testing.assert_array_equal(read_state_dict(path)["x"], values)


def test_safetensors_offsets_outside_the_data_are_refused(tmp_path):
    header = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}}).encode()
    path = tmp_path / "short.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(WeightFileError, match="'x'.*data_offsets"):
        read_state_dict(path)


def test_the_weight_readers_import_numpy_and_the_standard_library_only():
    # The readers must work (and be read) without MXNet: gluon_resnet/weights/ imports only
    # numpy, the standard library and its own modules.
    folder = os.path.dirname(read_state_dict.__globals__["__file__"])
    found = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name)) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found.update((a.name.split(".")[0], name) for a in node.names)
                elif isinstance(node, ast.ImportFrom):
                    found[node.module.split(".")[0] if node.level == 0 else
                          "." * node.level] = name
    assert len(found) > 5 and "." in found  # the walk saw the imports
    outside = {module: name for module, name in found.items()
               if module not in sys.stdlib_module_names and module not in ("numpy", ".")}
    assert outside == {}


def _crafted_pth(path, payload):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_pickle_with_a_forbidden_global_is_refused_unrun(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    _crafted_pth(path, pickle.dumps(_RunsCommand("touch %s" % marker), protocol=2))
    with pytest.raises(WeightFileError, match=r"global (posix|nt)\.system.*no code of the file "
                                              r"ran"):
        read_state_dict(path)
    assert not marker.exists()
    _crafted_pth(path, pickle.dumps({"w": os.system}, protocol=2))  # a bare reference too
    with pytest.raises(WeightFileError, match=r"(posix|nt)\.system"):
        load_torchvision_weights(get_model("resnet18_v1"), path)


def test_training_checkpoint_is_refused_with_advice(torch, tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": 3}, path)
    with pytest.raises(WeightFileError, match="keys 'model', 'epoch'.*checkpoint\\['model'\\]"):
        read_state_dict(path)


def test_legacy_torch_format_is_refused(torch, tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(WeightFileError, match="legacy.*re-save it with a current PyTorch"):
        read_state_dict(path)


@pytest.mark.parametrize("content", [b"", b"hello, weights", b"\0" * 100])
def test_a_file_that_is_neither_format_is_refused(tmp_path, content):
    path = tmp_path / "weights.bin"
    path.write_bytes(content)
    with pytest.raises(WeightFileError, match="neither a PyTorch .pth file.*nor a .safetensors"):
        read_state_dict(path)


def test_a_zip_that_is_not_a_torch_file_is_refused(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(WeightFileError, match="not a torch.save file.*data.pkl"):
        read_state_dict(path)


def test_a_tensor_reaching_outside_its_storage_is_refused(torch, tmp_path):
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source:
        members = {n: source.read(n) for n in source.namelist()}
    (data,) = [n for n in members if n.endswith("/data/0")]
    members[data] = members[data][:8]  # 2 of the 4 floats
    path = tmp_path / "truncated.pth"
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(WeightFileError, match="storage 0 should hold 4 float32 values"):
        read_state_dict(path)


def test_a_pickle_cannot_modify_the_functions_it_may_call(tmp_path):
    # GLOBAL torch._utils._rebuild_tensor_v2; BUILD (None, {'__defaults__': (True,)}); STOP
    name = b"__defaults__"
    payload = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X" + struct.pack("<I", len(name))
               + name + b"\x88\x85s\x86b.")
    path = tmp_path / "build.pth"
    _crafted_pth(path, payload)
    with pytest.raises(WeightFileError, match="read-only"):
        read_state_dict(path)


def test_an_expanded_tensor_is_refused(torch, tmp_path):
    path = tmp_path / "expanded.pth"
    torch.save({"w": torch.arange(3.0).expand(1000, 3)}, path)
    with pytest.raises(WeightFileError, match="storage 0 holds 3 elements.*contiguous"):
        read_state_dict(path)


def test_a_big_endian_file_is_byteswapped(torch, tmp_path):
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(6.0).reshape(2, 3)}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source:
        members = {n: source.read(n) for n in source.namelist()}
    for name in members:
        if name.endswith("/data/0"):
            members[name] = np.frombuffer(members[name], "<f4").astype(">f4").tobytes()
        elif name.endswith("/byteorder"):
            members[name] = b"big"
    path = tmp_path / "big.pth"
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    read = read_state_dict(path)["w"]
    assert read.dtype == np.float32 and read.dtype.isnative
    np.testing.assert_array_equal(read, np.arange(6.0).reshape(2, 3))


def test_a_truncated_weight_file_is_called_damaged(tmp_path):
    path = tmp_path / "resnet18.pth"
    with zipfile.ZipFile(path, "w") as archive:  # torch.save's layout
        archive.writestr("resnet18/data.pkl", pickle.dumps({}))
        archive.writestr("resnet18/data/0", b"\0" * 4096)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(WeightFileError, match="resnet18.pth is damaged or truncated: it starts "
                                              "as a zip archive"):
        read_state_dict(path)


# --- .pth files written here without PyTorch: shared storages, offsets, strides ----------

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
