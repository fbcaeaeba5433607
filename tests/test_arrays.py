"""arrays.py: array_ops computes the same in legacy and numpy mode (the operations the
blocks use), each operation against its numpy result."""

import contextlib

import numpy as np
import pytest

import mxnet as mx

from gluon_resnet.arrays import array_ops

from helpers import array_of_mode, numpy_mode_on, uniform_values


OPERATIONS = [  # (name, arguments after the arrays, number of array arguments)
    ("activation", ("relu",), 1), ("activation", ("sigmoid",), 1), ("add", (), 2),
    ("subsample", (2,), 1), ("append_zero_channels", (3,), 1), ("softmax", (1,), 1),
    ("flip", (3,), 1),
]


@pytest.mark.parametrize("name, args, arrays", OPERATIONS, ids=lambda v: str(v))
def test_each_operation_computes_the_same_in_both_modes(name, args, arrays):
    values = [uniform_values((2, 3, 5, 5), seed=i) for i in range(arrays)]

    def run():
        ops = array_ops(mx.nd)
        out = getattr(ops, name)(*[array_of_mode(v) for v in values], *args)
        assert isinstance(out, mx.np.ndarray) == mx.util.is_np_array()
        return out.asnumpy()

    expected = run()
    with numpy_mode_on():
        np.testing.assert_array_equal(run(), expected)


def test_scale_channels_broadcasts_over_height_and_width_in_both_modes():
    x, scale = uniform_values((2, 3, 5, 5)), uniform_values((2, 3, 1, 1), seed=1)
    for mode in (contextlib.nullcontext, numpy_mode_on):
        with mode():
            out = array_ops(mx.nd).scale_channels(array_of_mode(x), array_of_mode(scale)).asnumpy()
        np.testing.assert_allclose(out, x * scale, rtol=1e-6)
