"""Networks and the model registry.

Three networks are called "ResNet-18" in the d2l world; here each has a name
that says which one it is:

- ``chapter_resnet18``: the network of d2l-zh chapter 5.11 (7x7/2 stem with
  max-pool, ``Residual`` blocks with biased convolutions, ``Dense(10)``).
- ``resnet18``: ``d2lzh.resnet18(num_classes)``, the small-image variant used
  later in the book (3x3/1 stem, no max-pool).  Same name, same meaning.

Every network is reachable through ``get_model(name, **kwargs)``;
``list_models()`` lists the names.
"""

from ._mxnet import mx  # noqa: F401  (clear error when MXNet is missing)
from mxnet.gluon import nn

from .blocks import resnet_block, check_positive_int

__all__ = ["chapter_resnet18", "resnet18", "register_model", "list_models",
           "get_model", "model_description"]

_REGISTRY = {}


def register_model(name, description):
    """Decorator: register ``factory`` under ``name`` with a one-line description."""

    def wrap(factory):
        if name in _REGISTRY:
            raise RuntimeError("model %r is registered twice" % name)
        _REGISTRY[name] = (factory, description)
        return factory

    return wrap


def list_models():
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def model_description(name):
    """The one-line description a model was registered with."""
    return _lookup(name)[1]


def _lookup(name):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            "unknown model %r; the registered models are: %s"
            % (name, ", ".join(list_models()))
        ) from None


def get_model(name, **kwargs):
    """Build the registered model ``name``.

    Parameters
    ----------
    name : str
        One of ``list_models()``.
    **kwargs
        Passed to the model's factory (for example ``num_classes=10``).

    Returns
    -------
    mxnet.gluon.HybridBlock
        An uninitialised network.
    """
    factory, _ = _lookup(name)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ValueError("model %r does not accept these arguments: %s" % (name, exc)) from None


def _chapter_head(net, num_classes):
    net.add(resnet_block(64, 2, first_block=True, prefix="stage1_"),
            resnet_block(128, 2, prefix="stage2_"),
            resnet_block(256, 2, prefix="stage3_"),
            resnet_block(512, 2, prefix="stage4_"))
    net.add(nn.GlobalAvgPool2D(), nn.Dense(num_classes))


@register_model("chapter_resnet18",
                "d2l-zh 5.11's ResNet-18: 7x7/2 stem + max-pool, biased convs, 1-channel input")
def chapter_resnet18(num_classes=10):
    """The ResNet-18 of d2l-zh chapter 5.11.

    Stem: 7x7/2 convolution with 64 channels, BN, ReLU, 3x3/2 max-pool; then
    ``resnet_block(64, 2, first_block=True)``, ``resnet_block(128, 2)``,
    ``resnet_block(256, 2)``, ``resnet_block(512, 2)``, global average pool and
    ``Dense(num_classes)``.

    Parameters
    ----------
    num_classes : int, default 10
        Size of the output layer.

    Returns
    -------
    mxnet.gluon.nn.HybridSequential
        Input ``(N, C, H, W)`` (C = 1 for Fashion-MNIST; inferred at the first
        call); output ``(N, num_classes)``.  For a (1, 1, 224, 224) input the
        ten top-level layers give (1, 64, 112, 112) three times, (1, 64, 56, 56)
        twice, (1, 128, 28, 28), (1, 256, 14, 14), (1, 512, 7, 7),
        (1, 512, 1, 1) and (1, num_classes).
    """
    check_positive_int(num_classes, "num_classes", "chapter_resnet18")
    net = nn.HybridSequential(prefix="chapter_resnet18_")
    with net.name_scope():
        net.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3),
                nn.BatchNorm(),
                nn.Activation("relu"),
                nn.MaxPool2D(pool_size=3, strides=2, padding=1))
        _chapter_head(net, num_classes)
    return net


@register_model("resnet18",
                "d2lzh.resnet18(num_classes): 3x3/1 stem, no max-pool, for small images")
def resnet18(num_classes=10):
    """``d2lzh.resnet18(num_classes)``: the book's ResNet-18 for small images.

    Like ``chapter_resnet18`` but with a 3x3/1 convolution stem (64 channels,
    BN, ReLU) and no max-pool, so 28x28 or 32x32 inputs keep enough resolution.

    Parameters
    ----------
    num_classes : int, default 10
        Size of the output layer (d2lzh requires it; 10 is the default here).

    Returns
    -------
    mxnet.gluon.nn.HybridSequential
        Input ``(N, C, H, W)``; output ``(N, num_classes)``; the last stage
        has shape ``(N, 512, H / 8, W / 8)`` (rounded up).
    """
    check_positive_int(num_classes, "num_classes", "resnet18")
    net = nn.HybridSequential(prefix="resnet18_")
    with net.name_scope():
        net.add(nn.Conv2D(64, kernel_size=3, strides=1, padding=1),
                nn.BatchNorm(),
                nn.Activation("relu"))
        _chapter_head(net, num_classes)
    return net
