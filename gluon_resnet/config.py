"""What a training run is: ``TrainConfig``, its checks, and the named recipes.

``TrainConfig`` is the one source of the training options: each field
carries its type and help text, ``gluon-resnet train`` makes one option of
each (``--batch-size`` for ``batch_size``), checkpoints store it as a dict, and
a dict with a key that is not a field is refused.  Its defaults are the
recipe of d2l-zh 5.11 (chapter ResNet-18, Fashion-MNIST at 96x96, Xavier, SGD
with learning rate 0.05, batch 256, 5 epochs).
"""

import dataclasses

from .errors import RunError
from .models import list_models, unknown_model_message
from .precision import PRECISIONS
from .pretrained import SUPPORTED_MODELS
from . import validate

__all__ = ["TrainConfig", "RunError", "RECIPES", "recipe_config", "SCHEDULES", "KVSTORES",
           "OPTIMIZERS", "RESUME_CHANGES", "flag"]


#: Learning-rate schedules: the book's constant rate, or one cycle (up, then down).
SCHEDULES = ("constant", "onecycle")

#: How gradients of several devices or processes are added up (``gluon.Trainer(kvstore=...)``):
#: one process ('device': on the devices, 'local': on the CPU; none with a single device), or
#: workers of a distributed job (see ``gluon_resnet.distributed``).
KVSTORES = ("device", "local", "dist_sync", "dist_device_sync")

#: Optimizers (MXNet's names); momentum applies to sgd and nag.
OPTIMIZERS = ("sgd", "nag", "adam")

#: Named recipes: changes to ``TrainConfig()`` (the chapter's recipe).
#: benchmarks/RESULTS.md records the accuracy and time each one reached.
RECIPES = {
    # d2l-zh 5.11 as printed, the defaults of TrainConfig (precision auto: bf16 where this
    # CPU ran it faster when measured; the book's exact fp32 arithmetic with --precision fp32).
    "chapter": {},
    # compact_resnet8_w32 at 28x28 (3x3/2 stem, 32/64/128 channels: widths oneDNN's bf16
    # kernels handle well), Nesterov momentum, one-cycle schedule peaking at 0.4,
    # label smoothing, 3 epochs: chosen for accuracy within a time budget (benchmarks/RESULTS.md).
    "fast": {"model": "compact_resnet8_w32", "resize": None, "epochs": 3, "lr": 0.4,
             "batch_size": 256, "optimizer": "nag", "momentum": 0.9, "wd": 5e-4,
             "schedule": "onecycle", "label_smoothing": 0.1},
    # compact_resnet9 (compact_resnet8 with a deep stem) for 14 epochs with random
    # flips and shifts of at most one pixel (two did worse), evaluated with flip
    # test-time augmentation.
    "best": {"model": "compact_resnet9", "resize": None, "epochs": 14, "lr": 0.2,
             "batch_size": 256, "optimizer": "nag", "momentum": 0.9, "wd": 5e-4,
             "schedule": "onecycle", "label_smoothing": 0.1, "augment": True, "max_shift": 1,
             "tta": True},
}

#: What may change when a run is resumed: the rest would change the data or the network.
RESUME_CHANGES = ("epochs", "lr", "ctx", "data_root", "precision", "kvstore")

_POSITIVE_INT = validate.argument(validate.positive_int)
_NON_NEGATIVE_INT = validate.argument(validate.non_negative_int)
_POSITIVE_NUMBER = validate.argument(validate.positive_number, float)
_NON_NEGATIVE_NUMBER = validate.argument(validate.non_negative_number, float)
_FRACTION = validate.argument(validate.fraction, float)
_PROBABILITY = validate.argument(validate.probability, float)


def _option(default, help, parse=str, choices=None, metavar=None):
    """A ``TrainConfig`` field with what ``gluon-resnet train`` needs to offer it."""
    return dataclasses.field(default=default, metadata={
        "help": help, "parse": parse, "choices": choices, "metavar": metavar})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (defaults: the chapter's recipe).

    Frozen: a run that works out a value (the classes of an image folder, the
    kvstore of a distributed job) makes a new configuration with
    ``dataclasses.replace``, so no code sees a configuration change under it.

    Each field's metadata holds ``help``, ``parse`` (the command line's
    type: a function of the text; ``bool`` for on/off options) and
    ``choices``; ``gluon-resnet train`` is generated from them.
    """

    recipe: str = _option("chapter", "named recipe the other options change: chapter (the "
                          "book's), fast or best", choices=tuple(RECIPES))
    model: str = _option("chapter_resnet18", "registered model (see 'gluon-resnet models')",
                         metavar="NAME")
    epochs: int = _option(5, "epochs", _POSITIVE_INT)
    lr: float = _option(0.05, "learning rate (the peak of the one-cycle schedule)",
                        _POSITIVE_NUMBER)
    batch_size: int = _option(256, "batch size (in a launched job: the global batch of all "
                              "workers)", _POSITIVE_INT)
    resize: int = _option(96, "input size in pixels (--no-resize: 28x28)", _POSITIVE_INT)
    limit: int = _option(None, "train on a balanced subset of this many training images",
                         _POSITIVE_INT)
    seed: int = _option(0, "random seed (initialisation, shuffling, augmentation)",
                        _NON_NEGATIVE_INT)
    optimizer: str = _option("sgd", "optimizer", choices=OPTIMIZERS)
    momentum: float = _option(0.0, "momentum of sgd and nag", _NON_NEGATIVE_NUMBER)
    wd: float = _option(0.0, "weight decay", _NON_NEGATIVE_NUMBER)
    ctx: str = _option("auto", "devices: auto, cpu, gpu:0, gpu:0,1, cpu:0,1 or all",
                       metavar="DEVICES")
    data_root: str = _option(None, "folder with the four Fashion-MNIST IDX files",
                             metavar="FOLDER")
    data: str = _option(None, "train on your own images: a folder with train/<class>/ and "
                        "test/<class>/ (or val/), or one tree of class folders split by "
                        "--val-fraction (default: Fashion-MNIST)", metavar="PATH")
    val_fraction: float = _option(None, "with --data: share of each class's images held out "
                                  "as the test set, for a single tree of class folders",
                                  _FRACTION)
    skip_bad_images: bool = _option(False, "with --data: skip (and count) image files that "
                                    "cannot be decoded instead of stopping", bool)
    num_classes: int = _option(10, "output classes (with --data: the folder's classes)",
                               _POSITIVE_INT)
    precision: str = _option("auto", "auto (whichever of bf16 and fp32 was measured faster for "
                             "this network on this CPU, see 'gluon-resnet precision'), bf16 "
                             "(AMP; fp32 with a notice on CPUs without AVX512-BF16) or fp32 "
                             "(the book's exact arithmetic)", choices=PRECISIONS)
    schedule: str = _option("constant", "learning-rate schedule", choices=SCHEDULES)
    label_smoothing: float = _option(0.0, "label smoothing, in [0, 1)", _FRACTION)
    augment: bool = _option(False, "random flips and shifts of the training images", bool)
    max_shift: int = _option(2, "largest random shift in pixels when augmenting (0: flips only)",
                             _NON_NEGATIVE_INT)
    erase: float = _option(0.0, "random erasing: the probability that a training image gets "
                           "one black rectangle (2 to 40 percent of its area)", _PROBABILITY,
                           metavar="P")
    tta: bool = _option(False, "evaluate with flip test-time augmentation", bool)
    pretrained: str = _option(None, "fine-tune from torchvision ResNet weights of the model's "
                              "depth (.pth or .safetensors; resnet*_v1, resnext*, wide_resnet*): a "
                              "new output layer for num_classes, learning at 10x lr",
                              metavar="FILE")
    kvstore: str = _option("device", "how the gradients of several devices are added up: "
                           "device (on the devices) or local (on the CPU); dist_sync in a "
                           "launched job", choices=KVSTORES)

    def validate(self):
        """Check every field; raise ``RunError`` naming the first bad one."""
        try:
            for name in ("epochs", "batch_size", "num_classes"):
                validate.positive_int(getattr(self, name), name)
            for name in ("resize", "limit"):
                validate.optional_positive_int(getattr(self, name), name)
            validate.non_negative_int(self.seed, "seed")
            validate.non_negative_int(self.max_shift, "max_shift")
            validate.positive_number(self.lr, "lr")
            validate.non_negative_number(self.momentum, "momentum")
            validate.non_negative_number(self.wd, "wd")
            validate.fraction(self.label_smoothing, "label_smoothing")
            validate.probability(self.erase, "erase")
            if self.val_fraction is not None:
                validate.fraction(self.val_fraction, "val_fraction")
            for name, choices in (("recipe", tuple(RECIPES)), ("optimizer", OPTIMIZERS),
                                  ("precision", PRECISIONS), ("schedule", SCHEDULES),
                                  ("kvstore", KVSTORES)):
                validate.one_of(getattr(self, name), choices, name)
            for name in ("augment", "tta", "skip_bad_images"):
                validate.one_of(getattr(self, name), (False, True), name)
        except ValueError as exc:
            raise RunError(str(exc)) from None
        if self.data is None and (self.val_fraction is not None or self.skip_bad_images):
            raise validate.in_flags(
                RunError("val_fraction and skip_bad_images apply to your own images: give "
                         "data (--data PATH) too"),
                "--val-fraction and --skip-bad-images apply to your own images: give --data "
                "PATH too")
        if self.model not in list_models():
            raise RunError(unknown_model_message(self.model))
        if self.pretrained is not None and self.model not in SUPPORTED_MODELS:
            raise RunError("--pretrained takes torchvision ResNet weights, which fit only %s; "
                           "got --model %s" % (", ".join(SUPPORTED_MODELS), self.model))
        return self

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """The configuration of ``data`` (as ``to_dict`` gives); unknown keys are refused."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise RunError("unknown training option%s %s; the options are: %s"
                           % ("s" * (len(unknown) > 1), ", ".join(unknown), ", ".join(names)))
        return cls(**data)


def flag(name, value=dataclasses.MISSING):
    """The ``gluon-resnet train`` option of field ``name``, or how to give it ``value``.

    ``flag("data_root")`` is ``"--data-root"``; ``flag("resize", 96)`` is
    ``"--resize 96"``, ``flag("resize", None)`` is ``"--no-resize"`` (28x28),
    ``flag("augment", False)`` is ``"--no-augment"``; other fields left unset are
    ``"no --NAME"``.
    """
    option = "--" + name.replace("_", "-")
    if value is dataclasses.MISSING:
        return option
    if value is None:
        return "--no-resize" if name == "resize" else "no " + option
    if isinstance(value, bool):
        return option if value else "--no-" + option[2:]
    return "%s %s" % (option, value)


def recipe_config(name, **changes):
    """``TrainConfig`` of recipe ``name`` with ``changes`` on top (None values ignored)."""
    if name not in RECIPES:
        raise RunError("unknown recipe %r; the recipes are: %s" % (name, ", ".join(RECIPES)))
    fields = dict(RECIPES[name], recipe=name)
    fields.update({k: v for k, v in changes.items() if v is not None})
    return TrainConfig.from_dict(fields)
