"""The model registry: get_model's errors, and no model a test registers stays in it."""

import pytest

import mxnet as mx

from gluon_resnet import models
from gluon_resnet.config import RECIPES, TrainConfig
from gluon_resnet.models import get_model, list_models, model_description, register_model


def _broken(num_classes=10):
    return len(num_classes)  # TypeError: a bug, not a bad argument


def test_get_model_does_not_hide_bugs_as_bad_arguments(monkeypatch):
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))  # registered for this test
    register_model("test_core_broken", "a factory with a bug inside")(_broken)
    with pytest.raises(ValueError, match=r"model 'resnet18' does not accept these arguments"):
        get_model("resnet18", colour="red")
    with pytest.raises(ValueError, match=r"model 'cifar_resnet20_v1' does not accept these "
                                         r"arguments.*colour"):
        get_model("cifar_resnet20_v1", colour=True)  # its factory passes **kwargs on
    with pytest.raises(TypeError, match="has no len"):
        get_model("test_core_broken")
    assert "test_core_broken" in models.list_models()


def test_no_test_model_leaks_into_the_registry():
    assert not [m for m in models.list_models() if m.startswith("test_core")]


@pytest.mark.parametrize("name, w, count", [("compact_resnet8", 48, 690_970),
                                            ("compact_resnet8_w32", 32, 308_074)])
def test_compact_resnet8_counts(name, w, count):
    from gluon_resnet import get_model
    from gluon_resnet.summary import count_flops, count_parameters

    net = get_model(name)
    net.initialize()
    assert net(mx.nd.zeros((2, 1, 28, 28))).shape == (2, 10)
    def conv(cin, cout, k=3):
        return k * k * cin * cout

    def bn(c):
        return 2 * c

    expected = (conv(1, w) + bn(w)                                              # stem
                + 2 * (conv(w, w) + bn(w))                                      # stage 1
                + conv(w, 2 * w) + conv(2 * w, 2 * w) + 2 * bn(2 * w) + conv(w, 2 * w, 1)
                + bn(2 * w)
                + conv(2 * w, 4 * w) + conv(4 * w, 4 * w) + 2 * bn(4 * w)
                + conv(2 * w, 4 * w, 1) + bn(4 * w)
                + 4 * w * 10 + 10)                                              # dense
    assert count_parameters(net, trainable_only=True) == expected == count
    # Multiply-accumulates: each convolution's weights times its output positions.
    macs = (conv(1, w) * 14 ** 2 + 2 * conv(w, w) * 14 ** 2
            + (conv(w, 2 * w) + conv(2 * w, 2 * w) + conv(w, 2 * w, 1)) * 7 ** 2
            + (conv(2 * w, 4 * w) + conv(4 * w, 4 * w) + conv(2 * w, 4 * w, 1)) * 4 ** 2
            + 4 * w * 10)
    assert count_flops(get_model(name), (1, 1, 28, 28))["macs"] == macs


def test_compact_resnet9_is_compact_resnet8_with_a_deep_stem():
    from gluon_resnet import get_model
    from gluon_resnet.summary import count_flops, count_parameters

    assert RECIPES["best"]["model"] == "compact_resnet9"
    net8, net9 = get_model("compact_resnet8"), get_model("compact_resnet9")
    for net in (net8, net9):
        net.initialize()
        assert net(mx.nd.zeros((2, 1, 28, 28))).shape == (2, 10)
    # The extra layer: a 3x3 convolution from 1 to 16 channels and its BN; the
    # 3x3/2 convolution after it reads 16 channels instead of 1.
    extra = 9 * 1 * 16 + 2 * 16 + 9 * (16 - 1) * 48
    assert (count_parameters(net9, trainable_only=True)
            == count_parameters(net8, trainable_only=True) + extra == 697_626)
    extra_macs = 9 * 16 * 28 ** 2 + 9 * (16 - 1) * 48 * 14 ** 2
    assert (count_flops(get_model("compact_resnet9"), (1, 1, 28, 28))["macs"]
            == count_flops(get_model("compact_resnet8"), (1, 1, 28, 28))["macs"] + extra_macs)


def test_each_model_has_its_own_description_and_recipes_are_named_truly():
    """No two models share a description, and "the X recipe's network" is said of exactly
    the model recipe X trains (``config.RECIPES``)."""


    descriptions = {name: model_description(name) for name in list_models()}
    assert len(set(descriptions.values())) == len(descriptions)
    for recipe, changes in RECIPES.items():
        model = changes.get("model", TrainConfig().model)
        claimed = [name for name, text in descriptions.items()
                   if "the %s recipe's network" % recipe in text]
        assert claimed in ([model], []), (recipe, claimed)


def test_an_unknown_name_gets_the_closest_names():
    with pytest.raises(ValueError) as info:
        get_model("compact_resnet8_w23")
    message = str(info.value)
    assert "did you mean compact_resnet8_w32" in message and "list_models()" in message
    assert "resnet152_v2" not in message
