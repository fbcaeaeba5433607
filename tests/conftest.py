import os
import random

import numpy as np
import pytest

import mxnet as mx



@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    random.seed(0)
    np.random.seed(0)
    mx.random.seed(0)
