"""The ``gluon-resnet`` command.

Sub-commands: ``shapes`` (the chapter's shape table for any registered model).
Errors a user can fix are printed as one sentence with exit status 2.
"""

import argparse
import sys

__all__ = ["main", "build_parser"]


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % text) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer, got %d" % value)
    return value


def _cmd_shapes(args):
    from .models import get_model
    from .summary import summarize, format_summary

    net = get_model(args.model, num_classes=args.num_classes)
    rows = summarize(net, (1, args.channels, args.size, args.size))
    print("%s, input %s" % (args.model, (1, args.channels, args.size, args.size)))
    print(format_summary(rows))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="gluon-resnet",
        description="d2l-zh chapter 5.11 (ResNet) on MXNet Gluon: shapes, training, models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("shapes", help="print each layer's output shape and parameter count")
    p.add_argument("--model", default="chapter_resnet18", help="registered model name (see 'models')")
    p.add_argument("--size", type=_positive_int, default=224, help="input height and width (default 224)")
    p.add_argument("--channels", type=_positive_int, default=1, help="input channels (default 1)")
    p.add_argument("--num-classes", type=_positive_int, default=10, help="output classes (default 10)")
    p.set_defaults(func=_cmd_shapes)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print("gluon-resnet %s: error: %s" % (args.command, exc), file=sys.stderr)
        return 2
