"""The chapter's network: shape table, hybridize/export, shape printer, devices."""

import subprocess
import sys

import numpy as np
import pytest

import mxnet as mx

from gluon_resnet import chapter_resnet18, resnet18, summarize
from gluon_resnet.cli import main
from gluon_resnet.summary import InputTooSmallError

BOOK_TABLE = [(1, 64, 112, 112)] * 3 + [(1, 64, 56, 56)] * 2 + [
    (1, 128, 28, 28), (1, 256, 14, 14), (1, 512, 7, 7), (1, 512, 1, 1), (1, 10)]


def test_chapter_shape_table():
    rows = summarize(chapter_resnet18(), (1, 1, 224, 224))
    assert [r["shape"] for r in rows] == BOOK_TABLE
    assert [r["kind"] for r in rows][:4] == ["StemConv2D", "BatchNorm", "Activation", "MaxPool2D"]
    # 7x7 conv on one channel: 64 * 49 weights + 64 biases.
    assert rows[0]["params"] == 64 * 49 + 64


def test_chapter_parameter_count_equals_the_book_net():
    import d2lzh
    from gluon_resnet.summary import count_parameters
    from helpers import book_net

    book = book_net(d2lzh.Residual)
    book.initialize()
    book(mx.nd.zeros((1, 1, 96, 96)))
    rows = summarize(chapter_resnet18(), (1, 1, 96, 96))
    assert sum(r["params"] for r in rows) == count_parameters(book, trainable_only=True) > 11e6


def test_shapes_command_prints_the_table(capsys):
    assert main(["shapes"]) == 0
    out = capsys.readouterr().out
    for shape in BOOK_TABLE:
        assert str(shape) in out
    total = sum(r["params"] for r in summarize(chapter_resnet18(), (1, 1, 224, 224)))
    assert "total" in out and format(total, ",") in out


@pytest.mark.slow
def test_shapes_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "gluon_resnet", "shapes", "--size", "96"],
                         capture_output=True, text=True, check=True).stdout
    assert "(1, 512, 3, 3)" in out and "(1, 10)" in out


def test_shapes_too_small_names_the_layer(capsys):
    with pytest.raises(InputTooSmallError, match=r"8x8 is too small.*stage3"):
        summarize(chapter_resnet18(), (1, 1, 8, 8))
    assert main(["shapes", "--size", "8"]) == 2
    err = capsys.readouterr().err
    assert "too small" in err and "stage3" in err and "Traceback" not in err


def test_shapes_bad_model_name(capsys):
    assert main(["shapes", "--model", "resnet9000"]) == 2
    err = capsys.readouterr().err
    assert "resnet9000" in err and "'gluon-resnet models'" in err


@pytest.mark.parametrize("factory, shape",
                         [(chapter_resnet18, (2, 1, 96, 96)), (resnet18, (2, 1, 28, 28))])
def test_hybridized_equals_imperative_and_export_round_trip(factory, shape, tmp_path):
    net = factory()
    net.initialize(mx.init.Xavier())
    x = mx.nd.random.uniform(shape=shape)
    imperative = net(x).asnumpy()
    net.hybridize()
    hybrid = net(x).asnumpy()
    np.testing.assert_allclose(hybrid, imperative, rtol=1e-4, atol=1e-5)
    prefix = str(tmp_path / "net")
    net.export(prefix)
    loaded = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                          prefix + "-0000.params")
    np.testing.assert_allclose(loaded(x).asnumpy(), imperative, rtol=1e-4, atol=1e-5)


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        chapter_resnet18(num_classes=0)
