"""layers.py: the shortcuts (zero padding, average-pool then project) and squeeze-excite."""

import numpy as np
import pytest

import mxnet as mx

from gluon_resnet.blocks import SqueezeExcite, ZeroPadShortcut, make_shortcut


def _block_input(in_channels, size=6, seed=3):
    return mx.nd.array(np.random.RandomState(seed).normal(size=(2, in_channels, size, size)))


def test_zero_pad_shortcut_pads_channels_and_subsamples():
    x = _block_input(3, size=7)
    for hybridize in (False, True):
        sc = ZeroPadShortcut(5, stride=2)
        if hybridize:
            sc.hybridize()
        out = sc(x).asnumpy()
        assert out.shape == (2, 8, 4, 4)
        np.testing.assert_array_equal(out[:, :3], x.asnumpy()[:, :, ::2, ::2])
        assert not out[:, 3:].any()
    assert list(sc.collect_params().keys()) == []


@pytest.mark.parametrize("hybridize", [False, True])
def test_squeeze_excite_scales_each_channel_by_a_gate_of_its_mean(hybridize):
    se = SqueezeExcite(32, reduction=8)
    se.initialize(mx.init.Xavier())
    if hybridize:
        se.hybridize()
    x = _block_input(32, size=4)
    w1, b1 = se.fc1.weight.data().asnumpy()[:, :, 0, 0], se.fc1.bias.data().asnumpy()
    w2, b2 = se.fc2.weight.data().asnumpy()[:, :, 0, 0], se.fc2.bias.data().asnumpy()
    assert w1.shape == (4, 32) and w2.shape == (32, 4)
    se.fc2.bias.set_data(mx.nd.array(np.linspace(-1, 1, 32)))  # gates away from 0.5
    b2 = se.fc2.bias.data().asnumpy()
    mean = x.asnumpy().mean(axis=(2, 3))
    gate = 1 / (1 + np.exp(-(np.maximum(mean @ w1.T + b1, 0) @ w2.T + b2)))
    np.testing.assert_allclose(se(x).asnumpy(), x.asnumpy() * gate[:, :, None, None],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hybridize", [False, True])
def test_avg_down_shortcut_pools_then_projects(hybridize):
    """ResNet-D: 2x2 average pool (ceil mode, padding not counted), then a stride-1 1x1 conv."""
    sc = make_shortcut("B", 3, 4, 2, normalize=False, avg_down=True)
    sc.initialize(mx.init.Xavier())
    if hybridize:
        sc.hybridize()
    x = _block_input(3, size=5)
    xn = x.asnumpy()
    pooled = np.stack([np.stack([xn[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(2, 3))
                                 for j in range(3)], axis=-1) for i in range(3)], axis=-2)
    w = sc[1].weight.data().asnumpy()[:, :, 0, 0]
    np.testing.assert_allclose(sc(x).asnumpy(), np.einsum("oc,nchw->nohw", w, pooled),
                               rtol=1e-5, atol=1e-6)
    assert sc[1]._kwargs["stride"] == (1, 1)
    # Stride 1 (the first stage's first block): nothing to pool.
    assert len(make_shortcut("B", 64, 256, 1, avg_down=True)) == 2
