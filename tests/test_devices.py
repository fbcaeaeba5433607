"""devices.py: try_gpu and try_all_gpus on a machine without a GPU, in both modes."""

import pytest

import mxnet as mx
from mxnet import npx

from d2l import mxnet as d2l

from gluon_resnet import try_all_gpus, try_gpu


def test_try_gpu_on_this_cpu_machine():
    if mx.context.num_gpus() > 0:
        pytest.skip("this machine has a GPU")
    assert try_gpu() == mx.cpu(0)
    assert try_all_gpus() == [mx.cpu(0)]


def test_devices_in_numpy_mode(numpy_mode):
    assert try_gpu() == d2l.try_gpu() == try_gpu(0)
    gpus = d2l.try_all_gpus()
    # d2l 1.0.3 gives [] without a GPU (its docstring says [cpu()]); ours keeps the first
    # edition's [cpu()], so that a list of devices is never empty.
    assert try_all_gpus() == (gpus or [mx.cpu()])
    assert npx.is_np_array()
