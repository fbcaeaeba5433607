"""Argument checks with one wording, for functions, configurations and the command line.

Each check returns the value when it is good and raises ``ValueError``
otherwise, with a message of one form: ``"<owner>: <name> must be <what>, got
<value>."`` (``owner`` is what the argument belongs to, for example
``"Residual"``; without it the message starts with the name).  ``argument``
turns a check into an ``argparse`` type, so that ``--epochs 0`` is refused
with the same words.  No MXNet here: the command line imports this module.
"""

import argparse
import math
import numbers

__all__ = ["positive_int", "non_negative_int", "optional_positive_int", "positive_number",
           "non_negative_number", "fraction", "probability", "one_of", "shard", "argument",
           "in_flags"]


def _fail(name, owner, what, value):
    where = "%s: %s" % (owner, name) if owner else name
    raise ValueError("%s must be %s, got %r." % (where, what, value))


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(value, name, owner=None):
    """``value`` if it is an integer >= 1 (``bool`` is not an integer here)."""
    if not _is_int(value) or value <= 0:
        _fail(name, owner, "a positive integer", value)
    return value


def non_negative_int(value, name, owner=None):
    """``value`` if it is an integer >= 0."""
    if not _is_int(value) or value < 0:
        _fail(name, owner, "a non-negative integer", value)
    return value


def optional_positive_int(value, name, owner=None):
    """``value`` if it is None or a positive integer."""
    return None if value is None else positive_int(value, name, owner)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value)


def positive_number(value, name, owner=None):
    """``value`` if it is a finite number > 0."""
    if not _is_number(value) or not value > 0:
        _fail(name, owner, "a positive number", value)
    return value


def non_negative_number(value, name, owner=None):
    """``value`` if it is a finite number >= 0."""
    if not _is_number(value) or value < 0:
        _fail(name, owner, "a non-negative number", value)
    return value


def fraction(value, name, owner=None):
    """``value`` if it is a number in [0, 1)."""
    if not _is_number(value) or not 0 <= value < 1:
        _fail(name, owner, "a number in [0, 1)", value)
    return value


def probability(value, name, owner=None):
    """``value`` if it is a number in [0, 1]."""
    if not _is_number(value) or not 0 <= value <= 1:
        _fail(name, owner, "a number in [0, 1]", value)
    return value


def one_of(value, choices, name, owner=None):
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        _fail(name, owner, "one of %s" % ", ".join(map(str, choices)), value)
    return value


def shard(num_parts, part_index, owner=None):
    """``(num_parts, part_index)`` if ``0 <= part_index < num_parts``."""
    positive_int(num_parts, "num_parts", owner)
    if not _is_int(part_index) or not 0 <= part_index < num_parts:
        _fail("part_index", owner, "an integer from 0 to num_parts - 1 = %d" % (num_parts - 1),
              part_index)
    return num_parts, part_index


def argument(check, parse=int):
    """An ``argparse`` type: ``parse`` the text, then ``check`` it.

    ``argument(positive_int)`` refuses ``--epochs 0`` with ``argument
    --epochs: must be a positive integer, got 0``.
    """
    def convert(text):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                "%r is not %s" % (text, "an integer" if parse is int else "a number")) from None
        try:
            return check(value, "value")
        except ValueError as exc:
            # The option's name comes from argparse: drop ours ("value must be ...").
            raise argparse.ArgumentTypeError(str(exc)[len("value "):].rstrip(".")) from None

    convert.__name__ = check.__name__.replace("_", " ")
    return convert


def in_flags(exc, text):
    """``exc``, carrying ``text`` (its message in the command line's flag names) as ``exc.flags``.

    A message names what the caller typed: ``root=FOLDER`` for a Python caller
    (``str(exc)``), ``--data-root FOLDER`` for a user of ``gluon-resnet``, whose
    error handler prints ``exc.flags`` when there is one.
    """
    exc.flags = text
    return exc
