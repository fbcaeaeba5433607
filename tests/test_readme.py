"""The README's Python snippets run as a reader pastes them, and print no warning.

Each ```python block runs in its own interpreter, in an empty folder, with no
``OMP_NUM_THREADS`` (a reader's shell has none) and Python's default warning
filters (what a reader sees).  The code runs as written with one exception,
``SHORTER``: the training calls that take the chapter's full half hour train on
a subset for one epoch (the ``limit``/``test_limit`` arguments and the epoch
count change, nothing else).  The weight files the fine-tuning snippet loads
(``resnet50.pth``, ``resnet18.pth``) are written first, with random weights in
torchvision's layout.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from helpers import require_data

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.M | re.S)

#: The only changes made to the snippets: (text as in the README, what runs instead).
SHORTER = [
    ("load_data_fashion_mnist(256, resize=96)",
     "load_data_fashion_mnist(256, resize=96, limit=40, test_limit=40)"),
    ("train_ch5(net, train_iter, test_iter, 256, trainer, ctx, 5)",
     "train_ch5(net, train_iter, test_iter, 256, trainer, ctx, 1)"),
    ("train_ch6(net, train_iter, test_iter, 10, 0.05, try_gpu())",
     "train_ch6(net, train_iter, test_iter, 1, 0.05, try_gpu())"),
]


def _shortened(code):
    for old, new in SHORTER:
        code = code.replace(old, new)
    return code


def test_the_shortened_calls_are_the_readmes():
    """Each replacement finds its call: a README edit cannot turn the test into a full run."""
    assert BLOCKS
    for old, _ in SHORTER:
        assert any(old in block for block in BLOCKS), old


def _write_weight_files(folder):
    torch = pytest.importorskip("torch", reason="the fine-tuning snippet's .pth files are "
                                "written with PyTorch (the test extra)")
    from torchvision_layout import torch_resnet

    for depth in (50, 18):
        torch.save(torch_resnet(depth).state_dict(), folder / ("resnet%d.pth" % depth))


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_snippet_runs_without_a_warning(index, tmp_path):
    code = BLOCKS[index]
    if "load_data_fashion_mnist" in code:
        require_data()
    if ".pth'" in code:
        _write_weight_files(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-"], input=_shortened(code), capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
