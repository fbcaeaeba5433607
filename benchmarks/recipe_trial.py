"""One trial of a recipe change: the ``best`` recipe with another network or other settings.

Usage::

    python benchmarks/recipe_trial.py OUT [--layers 2,2,2 --width 32 --stem halve]
                                          [--model NAME] [--set FIELD=VALUE ...]

Trains ``recipe_config("best")`` through ``run_training`` (what ``gluon-resnet
train --recipe best`` runs) into the new folder ``OUT`` and ends with one line
``RESULT {json}``: the last epoch's test and training accuracy and the wall
time in seconds from the start of this script (imports, data loading and every
epoch's evaluation included), so that a candidate is timed the way the recipe
is.  The candidate network is either a registered model (``--model``) or a
``ResNet`` of basic blocks built from ``--layers`` (blocks per stage),
``--width`` (the stem's and first stage's channels; each later stage doubles
them) and ``--stem`` (see ``gluon_resnet.models.STEMS``), registered for this
process only as ``trial_net``.  ``--set`` changes any ``TrainConfig`` field,
parsed as ``gluon-resnet train`` parses its option (``--set epochs=28 --set
precision=bf16``).

This is how the "Toward 0.95" candidates in benchmarks/RESULTS.md were measured.  Run one
trial at a time on an idle machine.
"""

import time

START = time.time()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import gluon_resnet  # noqa: E402,F401  (before MXNet: threads and AMX)
from gluon_resnet import validate  # noqa: E402
from gluon_resnet.config import TrainConfig, RunError, recipe_config  # noqa: E402
from gluon_resnet.experiment import run_training  # noqa: E402
from gluon_resnet.models import STEMS, BasicBlockV1, ResNet, register_model  # noqa: E402


_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def parse_settings(pairs):
    """``["epochs=28", ...]`` as ``{"epochs": 28, ...}``, each value parsed as its field's option.

    Raises ``RunError`` naming a pair without ``=``, a field ``TrainConfig``
    does not have, ``model`` or ``recipe`` (set by ``--model``/``--layers``
    and fixed to ``best``), or a value its option refuses.
    """
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    settings = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise RunError("--set %r: expected FIELD=VALUE" % (pair,))
        if name not in fields:
            raise RunError("--set %r: TrainConfig has no field %r; the fields are: %s"
                           % (pair, name, ", ".join(fields)))
        if name in ("model", "recipe"):
            raise RunError("--set %r: the trial is recipe best; give the network with --model "
                           "or --layers" % (pair,))
        meta = fields[name].metadata
        if meta["parse"] is bool:
            if text.lower() not in _BOOLEANS:
                raise RunError("--set %r: %s is true or false" % (pair, name))
            settings[name] = _BOOLEANS[text.lower()]
        else:
            try:
                settings[name] = meta["parse"](text)
                if meta["choices"]:
                    validate.one_of(settings[name], meta["choices"], name)
            except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
                raise RunError("--set %r: %s" % (pair, e)) from None
    return settings


def parse_layers(text):
    """``"2,2,2"`` as ``(2, 2, 2)``: positive block counts, one per stage."""
    try:
        layers = tuple(int(part) for part in text.split(","))
    except ValueError:
        layers = ()
    if not layers or min(layers) < 1:
        raise argparse.ArgumentTypeError("--layers must be positive integers separated by "
                                         "commas, for example 2,2,2; got %r" % (text,))
    return layers


def register_candidate(layers, width, stem):
    """Register ``trial_net``: basic blocks ``layers`` at ``width``, 2x, 4x, ... channels."""
    channels = (width,) + tuple(width * 2 ** i for i in range(len(layers)))

    @register_model("trial_net", "recipe trial: basic blocks %s at %s channels, %s"
                    % ("-".join(map(str, layers)), "/".join(map(str, channels[1:])), STEMS[stem]))
    def trial_net(num_classes=10, **kwargs):
        kwargs.setdefault("prefix", "trial_")
        return ResNet(BasicBlockV1, layers, channels, num_classes=num_classes, stem=stem,
                      **kwargs)

    return "trial_net"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="new run folder")
    p.add_argument("--model", help="a registered model instead of a --layers candidate")
    p.add_argument("--layers", type=parse_layers, help="blocks per stage, e.g. 2,2,2")
    p.add_argument("--width", type=int, default=32, help="first stage's channels (default 32)")
    p.add_argument("--stem", default="halve", choices=sorted(STEMS))
    p.add_argument("--set", dest="settings", action="append", default=[],
                   metavar="FIELD=VALUE", help="a TrainConfig field to change (repeatable)")
    args = p.parse_args(argv)
    if (args.model is None) == (args.layers is None):
        p.error("give either --model NAME or --layers (with --width and --stem)")
    if args.width < 1:
        p.error("--width must be a positive integer; got %d" % args.width)
    try:
        settings = parse_settings(args.settings)
        model = args.model or register_candidate(args.layers, args.width, args.stem)
        config = recipe_config("best", **dict(settings, model=model)).validate()
    except RunError as e:
        p.error(str(e))
    print(config, flush=True)
    history, _ = run_training(config, out=args.out, progress=False)
    print("RESULT " + json.dumps({
        "model": model, "epochs": len(history), "test_acc": history[-1]["test_acc"],
        "train_acc": history[-1]["train_acc"], "seconds": round(time.time() - START, 1)}),
        flush=True)


if __name__ == "__main__":
    main()
