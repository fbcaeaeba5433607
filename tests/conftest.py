import os
import random
import signal
import tempfile

import numpy as np
import pytest

import gluon_resnet  # noqa: F401  (before MXNet: it sets the thread count)
import mxnet as mx

from helpers import numpy_mode_on


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_under_pytest(tmp_path_factory):
    """Temporary files of the tests, and of every process they start, go under pytest's base
    temporary folder (which pytest removes after a few runs), never loose in /tmp."""
    folder = str(tmp_path_factory.mktemp("tmp", numbered=False))
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = folder, None  # None: read TMPDIR again
    yield
    if saved[0] is None:
        del os.environ["TMPDIR"]
    else:
        os.environ["TMPDIR"] = saved[0]
    tempfile.tempdir = saved[1]


@pytest.fixture(scope="session", autouse=True)
def _precision_auto_from_an_empty_cache(tmp_path_factory):
    """``--precision auto`` in every test (and process it starts) reads an empty cache of its
    own, never the user's, and never measures: fp32 unless a test stores or measures otherwise
    (tests/test_autoprecision.py)."""
    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "GLUON_RESNET_AUTO_MEASURE")}
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache", numbered=False))
    os.environ["GLUON_RESNET_AUTO_MEASURE"] = "0"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session", autouse=True)
def _stop_signals_as_a_terminal_gives():
    """The tests and the processes they start get the stop signals' dispositions a terminal
    gives (Ctrl-C raises KeyboardInterrupt, SIGTERM and SIGHUP end the process), whatever
    the test run inherited: started as a background job of a script, it would inherit SIGINT
    ignored, which gluon_resnet rightly leaves ignored.  Tests of inherited dispositions set
    them themselves."""
    wanted = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL,
              signal.SIGHUP: signal.SIG_DFL}
    saved = {s: signal.getsignal(s) for s in wanted}
    for s, handler in wanted.items():
        signal.signal(s, handler)
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    random.seed(0)
    np.random.seed(0)
    mx.random.seed(0)


@pytest.fixture(autouse=True)
def _no_bf16_in_this_process():
    """bf16 AMP cannot be undone: a test that turns it on here changes every later test."""
    yield
    from mxnet.contrib.amp import amp

    assert not amp._amp_initialized, (
        "this test turned on bf16 AMP in the test process; run bf16 in a subprocess "
        "or pass precision='fp32'")


@pytest.fixture(autouse=True)
def _numpy_mode_off_after_each_test():
    """A test that leaves MXNet's numpy mode on (npx.set_np()) would change every later test."""
    yield
    leaked = mx.util.is_np_array() or mx.util.is_np_shape()
    if leaked:
        mx.npx.reset_np()  # so that only the test that leaked fails
    assert not leaked, "this test left MXNet's numpy mode on; switch it off in a finally"


NO_TORCH = ("PyTorch is not installed: the comparisons with PyTorch's logits and with "
            "torch.save files need it (pip install -e '.[test]' brings it)")


@pytest.fixture(scope="session")
def torch():
    """PyTorch, or one skip that says why; the tests without this fixture run anyway."""
    try:
        import torch
    except ImportError:
        pytest.skip(NO_TORCH)
    return torch


@pytest.fixture
def numpy_mode():
    """Numpy mode on for the test, off again afterwards, whatever happens."""
    with numpy_mode_on():
        yield
