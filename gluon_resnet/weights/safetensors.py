"""``.safetensors`` files read with numpy.

Format: an 8-byte little-endian header length ``n``, ``n`` bytes of JSON
mapping each name to ``{"dtype", "shape", "data_offsets": [begin, end]}``
(offsets into the data that follows; an optional ``__metadata__`` entry holds
strings), then the raw little-endian data in C order.
"""

import collections
import json
import os

import numpy as np

from .decode import WeightFileError, as_int_tuple, decode, itemsize

__all__ = ["read_safetensors", "safetensors_header_length"]

_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
                       "I64": "int64", "I32": "int32"}
_MAX_HEADER = 100 * 2 ** 20  # the reference implementation's limit


def safetensors_header_length(head, file_size):
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
    n = safetensors_header_length(blob[:9], len(blob))
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
        shape = as_int_tuple(tuple(shape) if isinstance(shape, list) else shape,
                             "%s: tensor %r's shape" % (source, name))
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * itemsize(dtype)
        if not (isinstance(begin, int) and isinstance(end, int)
                and 0 <= begin <= end <= len(data) and end - begin == nbytes):
            raise WeightFileError("%s: tensor %r of shape %s and dtype %s needs %d bytes, but its "
                                  "data_offsets are [%r, %r] in %d bytes of data."
                                  % (source, name, shape, dtype_code, nbytes, begin,
                                     end, len(data)))
        state[name] = decode(data[begin:end], dtype, count).reshape(shape).copy()
    return state
