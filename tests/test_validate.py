"""The argument checks of validate.py share one wording across the package."""

import pytest

import gluon_resnet
from gluon_resnet import validate


def test_validators_share_one_wording():
    with pytest.raises(ValueError, match=r"^Residual: strides must be a positive integer, "
                                         r"got 0\.$"):
        gluon_resnet.Residual(8, strides=0)
    with pytest.raises(ValueError, match=r"^load_data_fashion_mnist: batch_size must be a "
                                         r"positive integer, got 0\.$"):
        gluon_resnet.load_data_fashion_mnist(0)
    assert validate.shard(3, 2) == (3, 2)
    with pytest.raises(ValueError, match=r"part_index must be an integer from 0 to "
                                         r"num_parts - 1 = 2, got 3"):
        validate.shard(3, 3)
