"""AMX: switched on before MXNet loads, used by oneDNN, and never leaked to children.

Each case runs in a fresh Python process, because oneDNN reads its CPU setting
once per process.  The cases that need AMX are skipped on CPUs without it.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from gluon_resnet._cpu import cpu_flags

HAS_AMX = "amx_bf16" in cpu_flags()
needs_amx = pytest.mark.skipif(not HAS_AMX, reason="this CPU has no AMX-BF16")

# A bf16 convolution in plain MXNet, as a reader's own program or MXNet's
# scheduler might run one: it never asks Linux for the AMX registers.
PLAIN_BF16_CONV = textwrap.dedent("""
    import os, numpy as np, mxnet as mx
    print("DNNL_MAX_CPU_ISA=%s" % os.environ.get("DNNL_MAX_CPU_ISA"))
    bf16 = np.dtype([("bfloat16", np.uint16)])
    x = mx.nd.amp_cast(mx.nd.ones((8, 64, 24, 24)), dtype=bf16)
    w = mx.nd.amp_cast(mx.nd.ones((64, 64, 3, 3)), dtype=bf16)
    mx.nd.Convolution(x, w, no_bias=True, kernel=(3, 3), num_filter=64, pad=(1, 1)).wait_to_read()
    print("conv done")
""")

# The same convolution after importing gluon_resnet, then the plain program as a child.
OURS_THEN_CHILD = textwrap.dedent("""
    import os, subprocess, sys
    import gluon_resnet
    from gluon_resnet._mxnet import AMX
    print("AMX", AMX)
    print("parent DNNL_MAX_CPU_ISA=%s" % os.environ.get("DNNL_MAX_CPU_ISA"))
    exec(sys.argv[1])
    child = subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, text=True)
    print("child returncode", child.returncode)
    print("child said", child.stdout.replace("\\n", " | "))
""")


def _clean_env(**changes):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DNNL_MAX_CPU_ISA", "DNNL_VERBOSE", "GLUON_RESNET_DISABLE_AMX")}
    env.update(changes)
    return env


def _python(code, *args, **env):
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=_clean_env(**env), timeout=120)


@needs_amx
@pytest.mark.slow
def test_gluon_resnet_switches_amx_on_and_onednn_uses_it():
    done = _python(OURS_THEN_CHILD, PLAIN_BF16_CONV, DNNL_VERBOSE="1")
    assert done.returncode == 0, done.stderr
    assert "AMX (True, 'on')" in done.stdout
    # The parent's convolution ran on AMX kernels ...
    assert "avx512_core_amx_bf16" in done.stdout
    # ... and the variable that asked for them is gone from its environment.
    assert "parent DNNL_MAX_CPU_ISA=None" in done.stdout


@needs_amx
@pytest.mark.slow
def test_a_child_process_does_not_inherit_the_amx_setting():
    done = _python(OURS_THEN_CHILD, PLAIN_BF16_CONV)
    assert done.returncode == 0, done.stderr
    assert "child returncode 0" in done.stdout, done.stdout
    assert "child said DNNL_MAX_CPU_ISA=None | conv done" in done.stdout


@needs_amx
@pytest.mark.slow
def test_the_setting_without_the_permission_kills_a_process():
    """Why the variable must not leak: the same program with it dies with SIGILL."""
    done = _python(PLAIN_BF16_CONV, DNNL_MAX_CPU_ISA="AVX512_CORE_AMX")
    assert done.returncode == -4, (done.returncode, done.stderr[-500:])  # SIGILL


@needs_amx
@pytest.mark.slow
def test_disable_variable_keeps_onednn_off_amx():
    done = _python(OURS_THEN_CHILD, PLAIN_BF16_CONV, DNNL_VERBOSE="1",
                   GLUON_RESNET_DISABLE_AMX="1")
    assert done.returncode == 0, done.stderr
    assert "AMX (False, 'GLUON_RESNET_DISABLE_AMX is set')" in done.stdout
    assert "avx512_core_amx" not in done.stdout
    assert "avx512_core_bf16" in done.stdout  # bf16 still runs, on AVX512-BF16


@needs_amx
@pytest.mark.slow
def test_a_users_own_isa_setting_is_left_alone():
    code = ("import os, gluon_resnet; from gluon_resnet._mxnet import AMX; "
            "print(AMX, os.environ['DNNL_MAX_CPU_ISA'])")
    done = _python(code, DNNL_MAX_CPU_ISA="AVX512_CORE")
    assert done.returncode == 0, done.stderr
    assert "(False, 'DNNL_MAX_CPU_ISA=AVX512_CORE set by the user') AVX512_CORE" in done.stdout


@pytest.mark.slow
def test_mxnet_imported_first_leaves_amx_off():
    code = ("import mxnet, gluon_resnet; from gluon_resnet._mxnet import AMX; print(AMX)")
    done = _python(code, OMP_NUM_THREADS="1")
    assert done.returncode == 0, done.stderr
    expected = ("(False, 'MXNet was imported before gluon_resnet')" if HAS_AMX
                else "(False, 'this CPU has no AMX-BF16')")
    assert expected in done.stdout


@pytest.mark.slow
def test_bf16_kernels_names_what_runs():
    code = ("import gluon_resnet; from gluon_resnet.precision import bf16_kernels, "
            "describe_precision; print(bf16_kernels()); print(describe_precision('bf16')); "
            "print(describe_precision('fp32'))")
    flags = cpu_flags()
    cases = [({}, "AMX" if HAS_AMX else ("AVX512-BF16" if "avx512_bf16" in flags
                                          else "fp32 fallback")),
             ({"GLUON_RESNET_DISABLE_BF16": "1"}, "fp32 fallback")]
    if HAS_AMX:
        cases.append(({"GLUON_RESNET_DISABLE_AMX": "1"}, "AVX512-BF16"))
    for env, expected in cases:
        done = _python(code, **env)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines == [expected, "precision: bf16 on %s kernels" % expected,
                         "precision: fp32"], (env, lines)
