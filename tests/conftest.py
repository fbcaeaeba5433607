import random

import numpy as np
import pytest

import gluon_resnet  # noqa: F401  (before MXNet: it sets the thread count)
import mxnet as mx



@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    random.seed(0)
    np.random.seed(0)
    mx.random.seed(0)
