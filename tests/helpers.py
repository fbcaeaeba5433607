"""Helpers shared by the tests."""

import numpy as np

import mxnet as mx


def randomize_params(net, seed=0):
    """Give every parameter (BN running statistics included) a random value."""
    rng = np.random.RandomState(seed)
    for name, p in net.collect_params().items():
        if name.endswith("running_var") or name.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, size=p.shape)
        else:
            value = rng.normal(0, 0.1, size=p.shape)
        p.set_data(mx.nd.array(value, dtype=p.dtype))


def copy_params(src, dst):
    """Copy ``src``'s parameters into ``dst`` by registration order, checking shapes."""
    sp = list(src.collect_params().values())
    dp = list(dst.collect_params().values())
    assert len(sp) == len(dp), (len(sp), len(dp))
    for a, b in zip(sp, dp):
        assert a.shape == b.shape, (a.name, a.shape, b.name, b.shape)
        b.set_data(a.data())


DATA_DIR = "/usr/share/datasets/fashion-mnist"
