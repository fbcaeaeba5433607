"""Reading torchvision-layout weight files (.pth, .safetensors) into resnet*_v1.

Two references.  Without PyTorch: files written here from numpy arrays with torchvision's
names and shapes (``torchvision_shapes``, read from torchvision's ``resnet.py``, not from
``torchvision_key_map``), checked value by value against the layers they must fill (the
readers themselves: test_weights.py).  With PyTorch (the ``torch`` fixture of conftest.py;
the test extra installs it): a small torchvision-layout ResNet in plain PyTorch
(``torchvision_layout.py``) with random weights and random BN statistics, so that BN is
not the identity, whose logits in evaluation mode must match ours after loading, and files
written by ``torch.save``.  Where PyTorch is missing, its tests skip with one reason and
the others run.
"""

import collections
import json
import os
import re
import warnings

import numpy as np
import pytest

import mxnet as mx
from mxnet import npx

from gluon_resnet.cli import build_parser
from gluon_resnet.config import RunError, TrainConfig
from gluon_resnet.events import Callback
from gluon_resnet.experiment import HEAD_LR_MULT, run_training
from gluon_resnet import models
from gluon_resnet.pretrained import (SUPPORTED_MODELS, WeightMismatchError, get_model,
                                     load_pretrained, load_torchvision_weights,
                                     torchvision_key_map)
from gluon_resnet.weights import WeightFileError, read_state_dict

from helpers import needs_data, write_safetensors

SIZE = 64  # small inputs keep resnet50 fast; 64 -> 16 after the stem, 2 at stage 4
RTOL = 1e-4


@pytest.fixture(scope="session")
def ref(torch):
    """``torchvision_layout``: the PyTorch reference network (needs PyTorch)."""
    import torchvision_layout

    return torchvision_layout


# ---------------------------------------------------------------------------
# torchvision's names and shapes, as numpy arrays (no PyTorch needed).
# ---------------------------------------------------------------------------

def torchvision_shapes(depth=18, classes=1000, channels=3):
    """``{key: shape}`` of torchvision's ``resnet<depth>`` state_dict (18, 34 or 50), in order.

    Written from torchvision's ``resnet.py``: ``_make_layer`` adds ``downsample`` (a 1x1
    convolution and a BN) when the stride or the width changes; bottlenecks widen by 4.
    """
    bottleneck, counts = {18: (False, (2, 2, 2, 2)), 34: (False, (3, 4, 6, 3)),
                          50: (True, (3, 4, 6, 3))}[depth]
    shapes = collections.OrderedDict()

    def conv(name, out, inp, k):
        shapes[name + ".weight"] = (out, inp, k, k)

    def bn(name, c):
        for field in ("weight", "bias", "running_mean", "running_var"):
            shapes["%s.%s" % (name, field)] = (c,)
        shapes[name + ".num_batches_tracked"] = ()

    conv("conv1", 64, channels, 7)
    bn("bn1", 64)
    inplanes, expansion = 64, 4 if bottleneck else 1
    for k, (planes, count) in enumerate(zip((64, 128, 256, 512), counts), 1):
        for i in range(count):
            stride, p = (2 if k > 1 and i == 0 else 1), "layer%d.%d" % (k, i)
            if bottleneck:
                conv(p + ".conv1", planes, inplanes, 1)
                bn(p + ".bn1", planes)
                conv(p + ".conv2", planes, planes, 3)
                bn(p + ".bn2", planes)
                conv(p + ".conv3", planes * 4, planes, 1)
                bn(p + ".bn3", planes * 4)
            else:
                conv(p + ".conv1", planes, inplanes, 3)
                bn(p + ".bn1", planes)
                conv(p + ".conv2", planes, planes, 3)
                bn(p + ".bn2", planes)
            if stride != 1 or inplanes != planes * expansion:
                conv(p + ".downsample.0", planes * expansion, inplanes, 1)
                bn(p + ".downsample.1", planes * expansion)
            inplanes = planes * expansion
    shapes["fc.weight"], shapes["fc.bias"] = (classes, 512 * expansion), (classes,)
    return shapes


def numpy_state_dict(depth=18, seed=0, **kwargs):
    """Random float32 arrays in torchvision's names and shapes (``torchvision_shapes``).

    Each kind of BN value has its own range (weights 0.5..1.5, biases -1.5..-0.5, means
    2.5..3.5, variances 4.5..5.5), so a value that lands in the wrong slot is visible.
    """
    rng = np.random.RandomState(seed)
    ranges = {"weight": (0.5, 1.5), "bias": (-1.5, -0.5), "running_mean": (2.5, 3.5),
              "running_var": (4.5, 5.5)}
    state = collections.OrderedDict()
    for key, shape in torchvision_shapes(depth, **kwargs).items():
        field = key.rsplit(".", 1)[1]
        if field == "num_batches_tracked":
            state[key] = np.array(7, dtype=np.int64)
        elif len(shape) == 1 and not key.startswith("fc."):
            state[key] = rng.uniform(*ranges[field], size=shape).astype(np.float32)
        else:
            state[key] = rng.normal(0, 0.05, size=shape).astype(np.float32)
    return state


def mx_logits(net, x):
    return net(mx.nd.array(x)).asnumpy()  # outside autograd.record: inference mode


def relative_error(ours, theirs):
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.fixture(scope="module")
def numpy18():
    """torchvision's resnet18 state_dict as random numpy arrays."""
    return numpy_state_dict(18)


@pytest.fixture(scope="module")
def st18(numpy18, tmp_path_factory):
    """``numpy18`` as a .safetensors file: a torchvision resnet18 file made without PyTorch."""
    path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
    write_safetensors(path, numpy18)
    return path


@pytest.fixture(scope="module")
def torch18(ref):
    return ref.torch_resnet(18)


@pytest.fixture(scope="module")
def file18(torch, torch18, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torch18.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def torch50(ref):
    return ref.torch_resnet(50, seed=1)


@pytest.fixture(scope="module")
def file50(torch, torch50, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(torch50.state_dict(), path)
    return path


def image(channels=3, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, (2, channels, SIZE, SIZE)).astype(np.float32)


# ---------------------------------------------------------------------------
# Reading files.
# ---------------------------------------------------------------------------

def test_every_value_of_a_file_lands_in_the_layer_torchvision_names(numpy18, st18):
    # Our layers found by walking the network (not through torchvision_key_map), so a
    # swapped pair (a BN's mean and variance, weight and bias, two blocks) shows here.
    net = get_model("resnet18_v1", pretrained=st18)
    features = net.features
    layers = {"conv1": features[0], "bn1": features[1], "fc": net.output}
    for k in range(1, 5):
        for i, block in enumerate(features[3 + k]):
            for j, (conv, bn) in enumerate(zip(block.convs, block.bns), 1):
                layers["layer%d.%d.conv%d" % (k, i, j)] = conv
                layers["layer%d.%d.bn%d" % (k, i, j)] = bn
            if block.shortcut is not None:
                for n, layer in enumerate(block.shortcut):
                    layers["layer%d.%d.downsample.%d" % (k, i, n)] = layer
    checked = 0
    for key, array in numpy18.items():
        prefix, field = key.rsplit(".", 1)
        if field == "num_batches_tracked":
            continue
        layer = layers[prefix]
        if isinstance(layer, mx.gluon.nn.BatchNorm):
            field = {"weight": "gamma", "bias": "beta"}.get(field, field)
        np.testing.assert_array_equal(getattr(layer, field).data().asnumpy(), array, err_msg=key)
        checked += 1
    assert checked == 102  # 20 convolutions, 20 BNs of 4 tensors, the classifier's 2
    # A BN in prediction mode computes with these values: (x - mean) / sqrt(var + eps).
    x = np.full((1, 64, 1, 1), 4.0, np.float32)
    bn = {f: numpy18["bn1." + f] for f in ("weight", "bias", "running_mean", "running_var")}
    expected = (4.0 - bn["running_mean"]) / np.sqrt(bn["running_var"] + 1e-5) * bn["weight"] \
        + bn["bias"]
    np.testing.assert_allclose(features[1](mx.nd.array(x)).asnumpy().ravel(), expected,
                               rtol=1e-5)


# ---------------------------------------------------------------------------
# Logits agree with PyTorch.
# ---------------------------------------------------------------------------

def test_resnet18_v1_logits_match_torch(ref, torch18, file18):
    net = get_model("resnet18_v1")
    net.initialize()
    report = load_torchvision_weights(net, file18)
    assert report.loaded == len(torchvision_key_map(net)) == 102
    assert len(report.ignored) == 20  # num_batches_tracked of 20 BNs
    assert report.values == sum(t.numel() for k, t in torch18.state_dict().items()
                                if not k.endswith("num_batches_tracked"))
    x = image()
    theirs, ours = ref.torch_logits(torch18, x), mx_logits(net, x)
    assert ours.shape == (2, 1000)
    assert relative_error(ours, theirs) < RTOL
    net.hybridize()
    assert relative_error(mx_logits(net, x), theirs) < RTOL


def test_resnet50_v1_logits_match_torch(ref, torch50, file50):
    net = get_model("resnet50_v1")  # not initialised: the file initialises everything
    report = load_torchvision_weights(net, file50)
    assert report.loaded == 267 and not report.notices
    x = image(seed=1)
    assert relative_error(mx_logits(net, x), ref.torch_logits(torch50, x)) < RTOL


@pytest.mark.slow
@pytest.mark.parametrize("name, options", [("resnext50_32x4d", dict(groups=32, base_width=4)),
                                           ("wide_resnet50_2", dict(base_width=128))])
def test_resnext_and_wide_resnet_logits_match_torch(torch, ref, name, options, tmp_path):
    model = ref.torch_resnet(50, seed=3, **options)
    path = str(tmp_path / (name + ".pth"))
    torch.save(model.state_dict(), path)
    net = get_model(name, pretrained=path)
    x = image(seed=2)
    assert relative_error(mx_logits(net, x), ref.torch_logits(model, x)) < RTOL
    plain = str(tmp_path / "resnet50.pth")
    torch.save(ref.torch_resnet(50).state_dict(), plain)
    with pytest.raises(WeightMismatchError, match=r"layer1\.0\.conv1\.weight"):
        get_model(name, pretrained=plain)  # a plain ResNet-50 file: shapes name the key


def test_safetensors_file_gives_the_same_logits(ref, torch18, tmp_path):
    path = tmp_path / "resnet18.safetensors"
    write_safetensors(path, {k: v.numpy() for k, v in torch18.state_dict().items()})
    net = get_model("resnet18_v1")
    load_torchvision_weights(net, path)
    x = image(seed=2)
    assert relative_error(mx_logits(net, x), ref.torch_logits(torch18, x)) < RTOL


def test_half_precision_file_loads_into_float32(torch, torch18, tmp_path):
    path = tmp_path / "half.pth"
    torch.save({k: (v.half() if v.is_floating_point() else v)
                for k, v in torch18.state_dict().items()}, path)
    net = get_model("resnet18_v1")
    load_torchvision_weights(net, path)
    stem = net.features[0].weight.data().asnumpy()
    assert stem.dtype == np.float32
    np.testing.assert_array_equal(stem, torch18.conv1.weight.detach().half().float().numpy())


def test_load_pretrained_builds_initialises_and_loads(ref, torch18, file18):
    # get_model(name, pretrained=) is load_pretrained without the report.
    net, report = load_pretrained("resnet18_v1", file18)
    x = image(seed=3)
    assert relative_error(mx_logits(net, x), ref.torch_logits(torch18, x)) < RTOL
    assert report.loaded == 102


def test_get_model_pretrained_for_fine_tuning_leaves_the_classifier_out(torch18, file18):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # what the arguments ask for is no warning
        net, report = load_pretrained("resnet18_v1", file18, num_classes=10)
    assert re.search("fc left out.*1000 classes, the network 10", report.notices[0])
    assert report.skipped == ("fc.weight", "fc.bias")
    assert mx_logits(net, image()).shape == (2, 10)
    np.testing.assert_array_equal(net.features[1].running_var.data().asnumpy(),
                                  torch18.bn1.running_var.numpy())


def test_get_model_pretrained_with_one_input_channel(ref, torch18, file18):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the README's fine-tuning snippet prints nothing
        net = get_model("resnet18_v1", pretrained=file18, in_channels=1)
    grey = image(channels=1, seed=5)
    theirs = ref.torch_logits(torch18, np.repeat(grey, 3, axis=1))
    assert relative_error(mx_logits(net, grey), theirs) < RTOL


@pytest.mark.parametrize("kwargs", [{}, {"in_channels": 1}])
def test_get_model_pretrained_in_numpy_mode(ref, torch18, file18, kwargs):
    # Numpy mode writes -1, not 0, for the stem's input channels before they are known.
    x = image(channels=kwargs.get("in_channels", 3), seed=5)
    theirs = ref.torch_logits(torch18, np.repeat(x, 3 // x.shape[1], axis=1))
    npx.set_np()
    try:
        net = get_model("resnet18_v1", pretrained=file18, **kwargs)
        ours = net(mx.np.array(x)).asnumpy()
    finally:
        npx.reset_np()
    assert relative_error(ours, theirs) < RTOL


def test_key_map_names_torchvision_keys_after_our_parameters():
    net = get_model("resnet50_v1")
    key_map = torchvision_key_map(net)
    assert len(key_map) == 267 and list(key_map)[:2] == ["conv1.weight", "bn1.weight"]
    assert key_map["layer2.0.downsample.1.weight"] is net.features[5][0].shortcut[1].gamma
    assert key_map["layer4.2.bn3.running_var"] is net.features[7][2].bns[2].running_var
    assert key_map["fc.bias"] is net.output.bias


def test_get_model_pretrained_refuses_other_networks(st18):
    with pytest.raises(ValueError, match="resnet18_v1, resnet34_v1.*wide_resnet101_2; got "
                                         "'resnet18_v2'"):
        get_model("resnet18_v2", pretrained=st18)
    assert SUPPORTED_MODELS == ("resnet18_v1", "resnet34_v1", "resnet50_v1", "resnet101_v1",
                                "resnet152_v1", "resnext50_32x4d", "resnext101_32x8d",
                                "wide_resnet50_2", "wide_resnet101_2")


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_key_names_and_shapes_follow_from_the_spec_table(depth):
    # No table of torchvision's own: the names come from the network's arch (RESNET_SPEC's
    # block kind and blocks per stage), and must be torchvision's, in its order and shapes.
    net = get_model("resnet%d_v1" % depth)
    net.infer_shape(mx.nd.zeros((1, 3, 32, 32)))
    expected = [(k, s) for k, s in torchvision_shapes(depth).items()
                if not k.endswith("num_batches_tracked")]
    assert [(k, p.shape) for k, p in torchvision_key_map(net).items()] == expected


def test_get_model_pretrained_with_a_missing_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError):
        get_model("resnet18_v1", pretrained=tmp_path / "nowhere.pth")


def test_skip_classifier_keeps_our_output_layer(st18):
    net = get_model("resnet18_v1", num_classes=7)
    net.initialize(mx.init.Constant(0.25))
    report = load_torchvision_weights(net, st18, skip_classifier=True)
    assert report.skipped == ("fc.weight", "fc.bias") and report.loaded == 100
    assert (net.output.weight.data().asnumpy() == 0.25).all()


# ---------------------------------------------------------------------------
# One input channel: the stem's RGB filters are summed.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["built with in_channels=1", "deferred, in_channels=1 argument"])
def test_one_channel_network_sums_the_stem_filters(ref, torch18, file18, how):
    if how.startswith("built"):
        net, kwargs = get_model("resnet18_v1", in_channels=1), {}
    else:
        net, kwargs = get_model("resnet18_v1"), {"in_channels": 1}
    net.initialize()
    with pytest.warns(UserWarning, match="conv1.weight.*summed"):
        report = load_torchvision_weights(net, file18, **kwargs)
    assert "summed" in report.notices[0] and "summed" in str(report)
    stem = net.features[0].weight.data().asnumpy()
    assert stem.shape == (64, 1, 7, 7)
    np.testing.assert_allclose(stem, torch18.conv1.weight.detach().numpy().sum(1, keepdims=True),
                               rtol=1e-6)
    # A grey image x gives the logits torch gives for (x, x, x).
    grey = image(channels=1, seed=4)
    theirs = ref.torch_logits(torch18, np.repeat(grey, 3, axis=1))
    assert relative_error(mx_logits(net, grey), theirs) < RTOL


# ---------------------------------------------------------------------------
# Errors name the key.
# ---------------------------------------------------------------------------

def test_resnet50_file_into_resnet18_names_keys_and_depth(tmp_path):
    path = tmp_path / "resnet50.safetensors"  # the names matter here, not the values
    write_safetensors(path, {k: np.zeros(1, np.float32) for k in torchvision_shapes(50)})
    net = get_model("resnet18_v1")
    with pytest.raises(WeightMismatchError) as info:
        load_torchvision_weights(net, path)
    message = str(info.value)
    assert "does not fit resnet18_v1" in message
    assert "no place in it (layer1.0.conv3.weight" in message
    assert "holds weights for resnet50_v1" in message


def test_resnet18_file_into_resnet50_names_missing_keys(st18):
    with pytest.raises(WeightMismatchError, match="missing from the file.*"
                                                   "holds weights for resnet18_v1"):
        load_torchvision_weights(get_model("resnet50_v1"), st18)


def test_missing_key_is_named(numpy18, tmp_path):
    state = dict(numpy18)
    del state["layer3.1.bn2.running_var"]
    path = tmp_path / "missing.safetensors"
    write_safetensors(path, state)
    net = get_model("resnet18_v1")
    net.initialize(mx.init.Constant(0.5))
    with pytest.raises(WeightMismatchError, match=r"1 keys of resnet18_v1 are missing from the "
                                                   r"file \(layer3\.1\.bn2\.running_var\)"):
        load_torchvision_weights(net, path)
    # Nothing was loaded: the check comes first.
    assert (net.features[4][0].conv1.weight.data().asnumpy() == 0.5).all()


def test_shape_mismatch_names_the_key_and_both_shapes(numpy18, tmp_path):
    state = dict(numpy18)
    state["layer2.0.downsample.0.weight"] = np.zeros((128, 64, 3, 3), np.float32)
    path = tmp_path / "shape.safetensors"
    write_safetensors(path, state)
    with pytest.raises(WeightMismatchError, match=r"layer2\.0\.downsample\.0\.weight: file "
                                                   r"\(128, 64, 3, 3\), network \(128, 64, 1, 1\)"):
        load_torchvision_weights(get_model("resnet18_v1"), path)


def test_classifier_mismatch_suggests_skip_classifier(st18):
    with pytest.raises(WeightMismatchError, match=r"fc\.weight: file \(1000, 512\), network "
                                                   r"\(10, 512\).*skip_classifier=True"):
        load_torchvision_weights(get_model("resnet18_v1", num_classes=10), st18)


def test_networks_of_another_layout_are_refused(st18):
    for net in (get_model("resnet18_v2"), get_model("resnet50_v1", stride_in_1x1=True),
                get_model("cifar_resnet20_v1")):
        with pytest.raises(ValueError, match="fit only the networks of its layout"):
            load_torchvision_weights(net, st18)


@pytest.mark.parametrize("name, kwargs", [("seresnet50", {}),
                                          ("resnet50_v1", {"avg_down": True})])
def test_networks_with_extra_or_moved_layers_are_refused_before_loading(name, kwargs, tmp_path):
    # Their stem, blocks and shortcut option are torchvision's, but squeeze-excite adds
    # parameters torchvision has none for and avg_down moves the projection: no partial load.
    net = get_model(name, **kwargs)
    with pytest.raises(ValueError, match="fit only the networks of its layout.*(se_reduction|"
                                         "avg_down)"):
        load_torchvision_weights(net, tmp_path / "never-read.pth")


def test_build_options_that_change_the_layout_are_refused_before_the_file_is_read(tmp_path):
    with pytest.raises(ValueError, match="stride_in_1x1"):
        load_pretrained("resnet50_v1", tmp_path / "never-read.pth", stride_in_1x1=True)
    with pytest.raises(ValueError, match="gluon_resnet.get_model"):
        models.get_model("resnet18_v1", pretrained=tmp_path / "never-read.pth")
    with pytest.raises(TypeError, match=r"load_torchvision_weights\(net, path\)"):
        load_pretrained(get_model("resnet18_v1"), tmp_path / "never-read.pth")


def test_a_whole_saved_model_is_refused_with_advice(torch, tmp_path, torch18):
    path = tmp_path / "model.pth"
    torch.save(torch18, path)
    with pytest.raises(WeightFileError, match="TorchResNet.*model.state_dict"):
        read_state_dict(path)


def test_get_model_pretrained_of_another_depth_names_the_keys(st18):
    with pytest.raises(WeightMismatchError, match="does not fit resnet50_v1.*missing from the "
                                                   "file.*holds weights for resnet18_v1"):
        get_model("resnet50_v1", pretrained=st18)


# ---------------------------------------------------------------------------
# Fine-tuning: gluon-resnet train --model resnet18_v1 --pretrained FILE.
# ---------------------------------------------------------------------------

class _Watch(Callback):
    """Keeps the stem, a BN's statistics and the lr_mults at the start; evaluates on 32 images."""

    def before_fit(self, learner):
        net = learner.net
        self.stem = net.features[0].weight.data().asnumpy()
        self.bn_var = net.features[4][0].bns[0].running_var.data().asnumpy()
        self.lr_mults = {name: p.lr_mult for name, p in net.collect_params().items()}
        self.head = {p.name for p in net.output.collect_params().values()}
        params = learner.trainer._params  # the rates the optimizer will use, lr_mult applied
        self.lrs = dict(zip((p.name for p in params),
                            learner.trainer._optimizer._get_lrs(list(range(len(params))))))
        X, y = next(iter(learner.test_iter))
        learner.test_iter = [(X[:32], y[:32])]  # the test set's first batch is enough here

    def after_fit(self, learner):
        self.stem_after = learner.net.features[0].weight.data().asnumpy()


def _fine_tune_config(path, **changes):
    fields = dict(model="resnet18_v1", pretrained=str(path), resize=None, limit=64,
                  batch_size=32, epochs=1, lr=0.01, precision="fp32")
    fields.update(changes)
    return TrainConfig(**fields)


@needs_data
@pytest.mark.slow
def test_fine_tuning_on_fashion_mnist_from_a_torchvision_file(numpy18, st18, tmp_path, capsys):
    watch = _Watch()
    history, out = run_training(_fine_tune_config(st18), out=str(tmp_path / "run"),
                                progress=False, callbacks=[watch])
    printed = capsys.readouterr().out
    assert "loaded 100 tensors" in printed and "left out: fc.weight, fc.bias" in printed
    assert "notice: conv1.weight: the file's 3-channel filters were summed" in printed
    assert "notice: fc left out: the file's classifier has 1000 classes, the network 10" in printed
    # The body started from the file's weights: the stem summed to one channel, BN statistics.
    np.testing.assert_allclose(watch.stem, numpy18["conv1.weight"].sum(1, keepdims=True),
                               rtol=1e-6)
    np.testing.assert_array_equal(watch.bn_var, numpy18["layer1.0.bn1.running_var"])
    assert not np.array_equal(watch.stem, watch.stem_after)  # and then it trained
    # The new output layer (10 classes) learns at ten times the body's rate.
    assert HEAD_LR_MULT == 10
    assert watch.head and all(watch.lr_mults[n] == 10 for n in watch.head)
    assert all(m == 1 for n, m in watch.lr_mults.items() if n not in watch.head)
    assert [watch.lrs[n] for n in watch.head] == pytest.approx([0.1, 0.1])
    assert {lr for n, lr in watch.lrs.items() if n not in watch.head} == {0.01}
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["pretrained"] == str(st18)

    # Resuming reads the checkpoint, not the file (which may have moved), and keeps the head's
    # lr_mult; the file cannot be changed on resume.
    moved = tmp_path / "moved.pth"
    os.rename(st18, moved)
    try:
        with pytest.raises(RunError, match="cannot change pretrained"):
            run_training(resume=os.path.join(out, "checkpoint.ckpt"), quiet=True,
                         overrides={"pretrained": str(moved)})
        watch = _Watch()
        history, _ = run_training(resume=os.path.join(out, "checkpoint.ckpt"), quiet=True,
                                  progress=False, overrides={"epochs": 2}, callbacks=[watch])
    finally:
        os.rename(moved, st18)
    assert len(history) == 2
    assert all(watch.lr_mults[n] == 10 for n in watch.head)


def test_pretrained_option_refuses_other_models_and_is_a_train_option(st18):
    with pytest.raises(RunError, match="fit only resnet18_v1.*got --model compact_resnet8"):
        _fine_tune_config(st18, model="compact_resnet8").validate()
    args = build_parser().parse_args(["train", "--model", "resnet18_v1", "--pretrained",
                                      str(st18)])
    assert args.pretrained == str(st18)
