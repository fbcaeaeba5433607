"""The model registry: get_model's errors, and no model a test registers stays in it."""

import pytest

from gluon_resnet import models
from gluon_resnet.models import get_model, register_model


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
