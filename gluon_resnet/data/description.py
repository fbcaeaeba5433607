"""What a network was trained on: ``DataDescription`` (class names, channels, size, mean, std).

The loader reports it (``ArrayLoader.description()``); training stores it
as a plain dict (``to_dict``) in ``config.json`` and in every checkpoint as
``meta["data"]``::

    {"classes": [...], "channels": C, "size": [H, W], "mean": [...] or None,
     "std": [...] or None}

and ``eval``, ``predict`` and ``export`` read it back with ``from_dict``,
which checks every field.  A checkpoint without it is a Fashion-MNIST run
(``DataDescription.fashion_mnist``): the ten class names, one channel,
its ``resize`` (or 28) pixels square, no normalisation.
"""

import dataclasses
import math
import numbers

from .idx import TEXT_LABELS

__all__ = ["DataDescription"]


def _integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


@dataclasses.dataclass(frozen=True)
class DataDescription:
    """The images a network takes and the names of its outputs.

    Every field is checked when the record is made; a bad one raises
    ``ValueError`` with a sentence that names it.

    Attributes
    ----------
    classes : tuple of str
        Class names in label order (output ``i`` is ``classes[i]``); not empty.
    channels : int
        Input channels ``C`` (1: grey, 3: colour).
    size : (int, int)
        Input height and width ``(H, W)``: the network takes ``(N, C, H, W)``.
    mean, std : tuple of float, or None
        Per-channel statistics of pixels in [0, 1] that each batch was
        normalised with, ``(x - mean) / std`` (``channels`` values each, std
        positive); both None when the batches were not normalised.
    """

    classes: tuple
    channels: int
    size: tuple
    mean: tuple = None
    std: tuple = None

    def __post_init__(self):
        classes, channels, size, mean, std = (self.classes, self.channels, self.size,
                                              self.mean, self.std)
        if not (isinstance(classes, (list, tuple)) and classes
                and all(isinstance(c, str) for c in classes)):
            raise ValueError("data classes must be a non-empty list of names, got %r"
                             % (classes,))
        if not _integer(channels) or channels < 1:
            raise ValueError("data channels must be a positive integer, got %r" % (channels,))
        if not (isinstance(size, (list, tuple)) and len(size) == 2
                and all(_integer(s) and s > 0 for s in size)):
            raise ValueError("data size must be [height, width], two positive integers, got %r"
                             % (size,))
        if (mean is None) != (std is None):
            raise ValueError("data description has %s without %s"
                             % (("mean", "std") if std is None else ("std", "mean")))
        for name, values in (("mean", mean), ("std", std)):
            if values is not None and not (
                    isinstance(values, (list, tuple)) and len(values) == channels
                    and all(_number(v) for v in values)):
                raise ValueError("data %s must be %d numbers (one per channel), got %r"
                                 % (name, channels, values))
        if std is not None and not all(v > 0 for v in std):
            raise ValueError("data std must be positive, got %r" % (std,))
        fields = {"classes": tuple(classes), "channels": int(channels),
                  "size": tuple(int(s) for s in size),
                  "mean": None if mean is None else tuple(float(v) for v in mean),
                  "std": None if std is None else tuple(float(v) for v in std)}
        for name, value in fields.items():
            object.__setattr__(self, name, value)  # frozen: set once, here

    @classmethod
    def fashion_mnist(cls, size=28):
        """Fashion-MNIST at ``size x size``: its ten class names, one channel, no normalisation."""
        return cls(tuple(TEXT_LABELS), 1, (size, size))

    @classmethod
    def from_dict(cls, data, resize=None):
        """The record of a stored description (``to_dict``'s format), checked.

        Parameters
        ----------
        data : dict or None
            ``classes``, ``channels`` and ``size``, with ``mean`` and ``std``
            optional (None).  None: a run stored without a description,
            which is a Fashion-MNIST run (``fashion_mnist``).
        resize : int, optional
            That Fashion-MNIST run's ``resize`` (None: 28 pixels).

        Raises
        ------
        ValueError
            A field is missing or malformed; the message names it.
        """
        if data is None:
            return cls.fashion_mnist(resize or 28)
        try:
            classes, channels, size = data["classes"], data["channels"], data["size"]
            mean, std = data.get("mean"), data.get("std")
        except (KeyError, TypeError, AttributeError):
            raise ValueError("data description %r lacks classes, channels or size"
                             % (data,)) from None
        return cls(classes, channels, size, mean, std)

    def to_dict(self):
        """The description as JSON values (lists, not tuples): what ``from_dict`` reads."""
        return {"classes": list(self.classes), "channels": self.channels,
                "size": list(self.size), "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std)}

    @property
    def input_shape(self):
        """``(C, H, W)``: one image as the network takes it."""
        return (self.channels,) + self.size
