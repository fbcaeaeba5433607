"""Importing the package: thread setting, messages when MXNet is missing."""

import os
import subprocess
import sys

import pytest


def _python(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.mark.slow
def test_import_uses_every_core():
    done = _python("import os, gluon_resnet; print(os.environ['OMP_NUM_THREADS'])")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(os.sched_getaffinity(0))


@pytest.mark.slow
def test_an_explicit_thread_setting_is_kept():
    done = _python("import os, gluon_resnet; print(os.environ['OMP_NUM_THREADS'])",
                   OMP_NUM_THREADS="1")
    assert done.stdout.strip() == "1"


@pytest.mark.slow
def test_mxnet_imported_first_gets_a_warning():
    done = _python("import mxnet, gluon_resnet")
    assert done.returncode == 0, done.stderr
    if len(os.sched_getaffinity(0)) > 1:
        assert "import gluon_resnet first" in done.stderr


def test_missing_mxnet_says_what_to_install():
    done = _python("import sys; sys.modules['mxnet'] = None; import gluon_resnet")
    assert done.returncode != 0
    assert "MXNet is not installed" in done.stderr and "gluon-resnet[cpu]" in done.stderr
    assert "mxnet-cu112" in done.stderr
