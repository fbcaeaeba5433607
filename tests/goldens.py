"""Golden outputs: what each golden model computes for a fixed input, and where it is stored.

``tests/golden/<model>.json`` holds a model's output for a fixed input, with parameters
from ``mx.random.seed(GOLDEN_SEED)`` and ``mx.init.Xavier()``, in prediction mode.  The
tests (``test_models.py``) only compare with these files; ``python tests/regen_golden.py``
writes them, and nothing else does, so a test can never bless the outputs it checks.
"""

import json
import pathlib

import numpy as np

import mxnet as mx

from gluon_resnet.models import get_model, model_input_channels

GOLDEN_DIR = pathlib.Path(__file__).resolve().parent / "golden"
GOLDEN_SEED = 1234
GOLDEN_MODELS = ["chapter_resnet18", "resnet18_v1", "resnet50_v2", "cifar_resnet20_v1",
                 "cifar_resnet20_v2", "plain18", "resnet18_v1d", "wrn16_4"]
#: The old switch that made the golden test rewrite its files; now it fails the test.
REGEN_ENV = "GLUON_RESNET_REGEN_GOLDEN"
REGEN_COMMAND = "python tests/regen_golden.py"


def golden_input(channels, size=32, batch=2, seed=0):
    """The fixed input: ``(batch, channels, size, size)`` uniform in [-1, 1)."""
    rng = np.random.RandomState(seed)
    return mx.nd.array(rng.uniform(-1, 1, size=(batch, channels, size, size)))


def golden_output(name, seed=GOLDEN_SEED):
    """``(input, output)`` of ``name`` with 10 classes, Xavier-initialised from ``seed``."""
    mx.random.seed(seed)
    net = get_model(name, num_classes=10)
    net.initialize(mx.init.Xavier())
    x = golden_input(model_input_channels(name))
    return x, net(x).asnumpy()


def golden_path(name):
    return GOLDEN_DIR / ("%s.json" % name)


def golden_record(name):
    """What ``regen_golden.py`` stores for ``name``, computed now."""
    x, out = golden_output(name)
    return {"model": name, "seed": GOLDEN_SEED, "init": "Xavier()", "input_shape": list(x.shape),
            "output": [[float("%.8g" % v) for v in row] for row in out]}


def read_golden(name):
    """The stored record of ``name``; a missing file says how to write it."""
    path = golden_path(name)
    assert path.exists(), "no golden file %s; write it with %s %s" % (path, REGEN_COMMAND, name)
    return json.loads(path.read_text())
