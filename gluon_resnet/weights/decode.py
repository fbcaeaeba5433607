"""The error of the weight readers, and raw little- or big-endian arrays as numpy arrays.

numpy has no bfloat16, so bfloat16 values are widened to float32 (exactly: a
bfloat16 is the upper half of a float32).
"""

import numpy as np

__all__ = ["WeightFileError", "decode", "itemsize", "as_int_tuple"]


class WeightFileError(ValueError):
    """The file is not a weight file these readers read, or asks for code to run."""


def _bfloat16_to_float32(raw):
    """``uint16`` bit patterns of bfloat16 values -> the same values as ``float32``."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def itemsize(dtype_name):
    """Bytes per element of ``dtype_name`` in the file (``'bfloat16'``: 2)."""
    return 2 if dtype_name == "bfloat16" else np.dtype(dtype_name).itemsize


def decode(buffer, dtype_name, count, byteorder="little"):
    """``count`` elements of ``dtype_name`` from the start of ``buffer``, as a 1-D array."""
    raw_dtype = np.dtype(np.uint16 if dtype_name == "bfloat16" else dtype_name)
    raw_dtype = raw_dtype.newbyteorder("<" if byteorder == "little" else ">")
    flat = np.frombuffer(buffer, dtype=raw_dtype, count=count)
    flat = flat.astype(raw_dtype.newbyteorder("="), copy=False)
    return _bfloat16_to_float32(flat) if dtype_name == "bfloat16" else flat


def as_int_tuple(value, what):
    """``value`` if it is a tuple of non-negative ints, else a ``WeightFileError`` on ``what``."""
    if not isinstance(value, tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise WeightFileError("%s must be a tuple of non-negative integers, got %r."
                              % (what, value))
    return value
