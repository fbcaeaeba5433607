"""The ``gluon-resnet`` command.

Sub-commands: ``train`` (the chapter's recipe by default), ``eval`` (test
accuracy, per-class accuracy and figures of a trained network), ``shapes``
(the chapter's shape table for any registered model), ``models`` (every
registered model with its parameter count), ``launch`` (``train`` on several
worker processes, see ``gluon_resnet.distributed``).  Errors a user can fix
are printed as one sentence with exit status 2; Ctrl-C during training saves
a checkpoint and exits with status 130.
"""

import argparse
import sys

from .precision import PRECISIONS as PRECISION_NAMES  # imports no MXNet

__all__ = ["main", "build_parser"]

#: The recipes of ``gluon_resnet.experiment.RECIPES`` (named here to keep
#: ``--help`` free of an MXNet import).
RECIPE_NAMES = ("chapter", "fast", "best")
#: ``gluon_resnet.experiment.KVSTORES``, for the same reason.
KVSTORE_NAMES = ("device", "local", "dist_sync", "dist_device_sync")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % text) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer, got %d" % value)
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text) from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number, got %s" % text)
    return value


def _cmd_shapes(args):
    from .models import get_model
    from .summary import summarize, format_summary

    net = get_model(args.model, num_classes=args.num_classes)
    rows = summarize(net, (1, args.channels, args.size, args.size))
    print("%s, input %s" % (args.model, (1, args.channels, args.size, args.size)))
    print(format_summary(rows))
    return 0


def _cmd_train(args):
    from .experiment import recipe_config, run_training
    from .training import TrainingDiverged, TrainingInterrupted

    fields = {f: getattr(args, f) for f in ("model", "epochs", "lr", "batch_size", "resize",
                                            "limit", "seed", "ctx", "data_root", "precision",
                                            "kvstore")}
    config = None
    if args.resume:
        if args.recipe or args.no_resize:
            raise ValueError("a resumed run keeps its recipe and input size: leave out "
                             "--recipe and --no-resize")
    else:
        config = recipe_config(args.recipe or "chapter")
        if args.no_resize:
            config.resize = None
    try:
        history, out = run_training(config, out=args.out, resume=args.resume, overrides=fields,
                                    progress=False if args.no_progress else None)
    except TrainingInterrupted as exc:
        print("\n%s." % exc, file=sys.stderr)
        if exc.checkpoint:
            print("Nothing is lost: the state is saved in %s.\nResume with: gluon-resnet train "
                  "--resume %s" % (exc.checkpoint, exc.checkpoint), file=sys.stderr)
        return 130
    except TrainingDiverged as exc:
        print("gluon-resnet train: %s The last good checkpoint, if any, is kept." % exc,
              file=sys.stderr)
        return 1
    if out is not None:  # None on distributed workers other than worker 0
        print("run folder: %s (checkpoint.ckpt, history.json, history.csv, learning_curve.png, "
              "config.json)" % out)
    return 0


def _cmd_eval(args):
    from .evaluation import evaluate_run

    evaluate_run(args.params, model=args.model, resize=args.resize, data_root=args.data_root,
                 confusion=args.confusion, samples=args.samples, limit=args.limit,
                 precision=args.precision)
    return 0


def _add_train_parsers(sub):
    p = sub.add_parser("train", help="train a model on Fashion-MNIST (the chapter's recipe by default)",
                       description="Train on Fashion-MNIST. Defaults are d2l-zh 5.11's recipe: "
                       "chapter_resnet18, resize 96, Xavier, SGD lr 0.05, batch 256, 5 epochs.")
    p.add_argument("--recipe", choices=sorted(RECIPE_NAMES),
                   help="chapter (default: the book's), fast or best; other options change it")
    p.add_argument("--model", help="registered model (default chapter_resnet18)")
    p.add_argument("--epochs", type=_positive_int, help="epochs (default 5)")
    p.add_argument("--lr", type=_positive_float, help="learning rate (default 0.05)")
    p.add_argument("--batch-size", type=_positive_int, help="batch size (default 256)")
    p.add_argument("--resize", type=_positive_int, help="input size (default 96)")
    p.add_argument("--no-resize", action="store_true", help="train at 28x28")
    p.add_argument("--limit", type=_positive_int, help="use a balanced subset of this many training images")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--ctx", help="devices: auto (default), cpu, gpu:0, gpu:0,1 or all")
    p.add_argument("--kvstore", choices=KVSTORE_NAMES,
                   help="how the gradients of several devices are added up: device (default, "
                   "on the devices) or local (on the CPU); dist_sync in a launched job")
    p.add_argument("--precision", choices=list(PRECISION_NAMES),
                   help="auto (default: bf16 where the CPU's AMX is on and the network's "
                   "widths suit its kernels, else fp32), bf16 (AMP; fp32 with a notice on "
                   "CPUs without AVX512-BF16) or fp32 (the book's exact arithmetic)")
    p.add_argument("--data-root", help="folder with the four Fashion-MNIST IDX files")
    p.add_argument("--out", help="run folder (default runs/<model>-<date>-<time>)")
    p.add_argument("--resume", help="continue from this checkpoint.ckpt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="test accuracy, per-class accuracy and figures of a trained model")
    p.add_argument("--params", required=True, help="a checkpoint.ckpt, or a .params file with --model")
    p.add_argument("--model", help="model of a .params file (a checkpoint knows its own)")
    p.add_argument("--resize", type=_positive_int, help="input size (a checkpoint knows its own)")
    p.add_argument("--data-root", help="folder with the four Fashion-MNIST IDX files")
    p.add_argument("--limit", type=_positive_int, help="evaluate on a subset of this many test images")
    p.add_argument("--confusion", metavar="PNG", help="save the confusion matrix figure here")
    p.add_argument("--samples", metavar="PNG", help="save a grid of sample predictions here")
    p.add_argument("--precision", choices=list(PRECISION_NAMES), default="auto",
                   help="auto (default: bf16 with oneDNN fusion where the CPU's AMX is on "
                   "and the network suits it), bf16 or fp32")
    p.set_defaults(func=_cmd_eval)


def _cmd_launch(args):
    from .distributed import launch, worker_command

    return launch(worker_command(args.train_command), workers=args.workers, servers=args.servers,
                  timeout=args.timeout, threads=args.threads_per_worker)


def _add_launch_parser(sub):
    p = sub.add_parser(
        "launch", help="train with several worker processes on this machine (parameter server)",
        description="Start MXNet's parameter server on 127.0.0.1: one scheduler, the servers and "
        "the workers, each running 'gluon-resnet train' with the options after '--' and "
        "--kvstore dist_sync. --batch-size is the global batch, split evenly over the workers; "
        "only worker 0 evaluates, prints and writes the run folder. If a process fails, the "
        "others are stopped.",
        epilog="example: gluon-resnet launch --workers 2 -- train --no-resize --epochs 1")
    p.add_argument("--workers", type=_positive_int, default=2, help="worker processes (default 2)")
    p.add_argument("--servers", type=_positive_int, default=1, help="server processes (default 1)")
    p.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                   help="stop the whole job after this many seconds (exit status 124)")
    p.add_argument("--threads-per-worker", type=_positive_int, metavar="N",
                   help="OMP_NUM_THREADS of each worker (default: the cores divided among them)")
    p.add_argument("train_command", nargs=argparse.REMAINDER, metavar="-- train ...",
                   help="the training command and its options")
    p.set_defaults(func=_cmd_launch)


def _cmd_models(args):
    from .models import count_model_parameters, list_models, model_description, \
        model_input_channels

    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    names = list_models()
    width = max(len(n) for n in names)
    print("Registered models. Parameters: trainable ones (BN running statistics excluded), "
          "for %s classes and the input channels of column 'in' (1: Fashion-MNIST, "
          "3: ImageNet/CIFAR)."
          % ("each model's default number of" if args.num_classes is None else args.num_classes))
    print("%-*s  %2s  %11s  %s" % (width, "model", "in", "parameters", "description"))
    for name in names:
        count = count_model_parameters(name, **kwargs)
        print("%-*s  %2d  %11s  %s" % (width, name, model_input_channels(name), format(count, ","),
                                       model_description(name)))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="gluon-resnet",
        description="d2l-zh chapter 5.11 (ResNet) on MXNet Gluon: shapes, training, models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_train_parsers(sub)

    p = sub.add_parser("shapes", help="print each layer's output shape and parameter count")
    p.add_argument("--model", default="chapter_resnet18", help="registered model name (see 'models')")
    p.add_argument("--size", type=_positive_int, default=224, help="input height and width (default 224)")
    p.add_argument("--channels", type=_positive_int, default=1, help="input channels (default 1)")
    p.add_argument("--num-classes", type=_positive_int, default=10, help="output classes (default 10)")
    p.set_defaults(func=_cmd_shapes)

    p = sub.add_parser("models", help="list the registered models with their parameter counts")
    p.add_argument("--num-classes", type=_positive_int, default=None,
                   help="output classes (default: each model's own, 1000 for ImageNet nets)")
    p.set_defaults(func=_cmd_models)
    _add_launch_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print("gluon-resnet %s: error: %s" % (args.command, exc), file=sys.stderr)
        return 2
