"""The ``gluon-resnet`` command.

Sub-commands: ``train`` (the chapter's recipe by default, or your own images
with ``--data``), ``eval`` (test accuracy, per-class accuracy and figures of a
trained network), ``predict`` (the classes of image files), ``shapes``
(the chapter's shape table for any registered model), ``models`` (every
registered model with its parameter count), ``export`` (a trained network to
ONNX or MXNet's symbol format, see ``gluon_resnet.export``), ``launch`` (``train`` on several
worker processes, see ``gluon_resnet.distributed``), ``precision`` (what
``--precision auto`` measured on this CPU), ``quantize`` (a run's int8 network, see
``gluon_resnet.quantize``).  The options of ``train``
are the fields of ``TrainConfig``.  Errors a user can fix are printed as one
sentence in the flags the user typed (a bad option: after one usage line; the
whole usage is ``--help``'s) with exit status 2 (a file that cannot be written:
status 1); a stop signal during training (Ctrl-C, SIGTERM, SIGHUP) saves a
checkpoint and exits
with status 128 + its number (130, 143, 129), and the printed resume command
is the one this command was started with; the other commands stop at once with
one line and the same status (what they started, such as ``precision
--measure``'s measuring processes, is ended; files are written whole or not
at all).  The entry point that handles those signals while the package is
imported is ``gluon_resnet_command``.  A closed output pipe (``gluon-resnet
models | head``) ends the command quietly with status 141.
"""

import argparse
import dataclasses
import os
import shlex
import shutil
import sys

from .checkpoint import CHECKPOINT_NAME, SaveError, checkpoint_file, read_checkpoint_meta
from .config import TrainConfig, recipe_config, flag as config_flag
from .devices import parse_ctx
from .distributed import launch, worker_command
from .evaluation import evaluate_run
from .events import TrainingDiverged, TrainingInterrupted
from .experiment import run_training
from .export import export_checkpoint
from .models import count_model_parameters, get_model, list_models, model_description, \
    model_input_channels, unknown_model_message
from .int8 import show_int8_decisions
from .precision import INFERENCE_PRECISIONS, show_decisions
from .signals import StopSignals, signal_name
from .predict import format_predictions, predict_files
from .quantize import add_quantize_parser
from .summary import format_summary, summarize
from .validate import argument, non_negative_number, positive_int, positive_number

__all__ = ["main", "build_parser", "add_train_options"]

_POSITIVE_INT = argument(positive_int)
_POSITIVE_NUMBER = argument(positive_number, float)
_NON_NEGATIVE_NUMBER = argument(non_negative_number, float)


class _Parser(argparse.ArgumentParser):
    """An argument error prints one usage line and the error, not the whole usage block.

    The block (every option) is what ``--help`` prints; a typo needs the one line
    that says what was wrong.  Sub-command parsers are of this class too.
    """

    def error(self, message):
        self.exit(2, "usage: %s ... (%s --help lists the options)\n%s: error: %s\n"
                  % (self.prog, self.prog, self.prog, message))


def _device(spec, command):
    """The one device of ``--ctx spec`` for ``command`` (eval, predict), parsed as train does."""
    ctxs = parse_ctx(spec)
    if len(ctxs) != 1:
        raise ValueError("--ctx %s names %d devices; %s runs on one: give one, for example "
                         "cpu or gpu:0" % (spec, len(ctxs), command))
    return ctxs[0]


def _add_ctx_option(parser):
    parser.add_argument("--ctx", default="cpu", metavar="DEVICE",
                        help="the device: cpu (default), cpu:1, gpu:0 or auto (a GPU if "
                        "there is one), as train's --ctx")


def _cmd_shapes(args):
    net = get_model(args.model, num_classes=args.num_classes)
    rows = summarize(net, (1, args.channels, args.size, args.size))
    print("%s, input %s" % (args.model, (1, args.channels, args.size, args.size)))
    print(format_summary(rows))
    return 0


def _train_fields(args):
    """The ``TrainConfig`` fields given on the command line (None: not given)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
            if f.name != "recipe"}


def program():
    """How the user started this command, to print commands that work when pasted.

    ``gluon-resnet`` when that name finds this very script on the PATH; the
    path typed otherwise (``.venv/bin/gluon-resnet``); ``python -m
    gluon_resnet`` with this interpreter's path when started that way.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "__main__.py":
        python = sys.executable
        relative = os.path.relpath(python)
        return "%s -m gluon_resnet" % shlex.quote(python if relative.startswith("..") else
                                                  relative)
    if os.path.basename(argv0) == "gluon-resnet":
        found = shutil.which("gluon-resnet")
        if found and os.path.samefile(found, argv0):
            return "gluon-resnet"
        return shlex.quote(argv0)
    return "gluon-resnet"  # main() called from Python: the name the README uses


def shown_path(path):
    """``path`` in one form wherever a command prints it: relative to the current folder when
    it is inside it (``runs/x/checkpoint.ckpt``), absolute otherwise."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return absolute if relative == os.pardir or relative.startswith(os.pardir + os.sep) \
        else relative


def _resume_hint(checkpoint):
    return "%s train --resume %s" % (program(), shlex.quote(shown_path(checkpoint)))


def _cmd_train(args):
    config = None
    if args.resume:
        if args.recipe or args.no_resize:
            raise ValueError("a resumed run keeps its recipe and input size: leave out "
                             "--recipe and --no-resize")
    else:
        config = recipe_config(args.recipe or "chapter")
        if args.no_resize:
            config = dataclasses.replace(config, resize=None)
    try:
        history, out = run_training(config, out=args.out, resume=args.resume,
                                    overrides=_train_fields(args),
                                    progress=False if args.no_progress else None,
                                    checkpoint_minutes=args.checkpoint_minutes)
    except TrainingInterrupted as exc:
        print("\n%s." % exc, file=sys.stderr)
        if exc.checkpoint:
            print("Nothing is lost: the state is saved in %s.\nResume with: %s"
                  % (shown_path(exc.checkpoint), _resume_hint(exc.checkpoint)), file=sys.stderr)
        elif not exc.immediate:  # stopped before the first checkpoint
            print("Nothing was saved yet: the same command starts the run again.",
                  file=sys.stderr)
        return exc.exit_status
    except TrainingDiverged as exc:
        print("gluon-resnet train: %s The last good checkpoint, if any, is kept." % exc,
              file=sys.stderr)
        return 1
    except SaveError as exc:
        print("gluon-resnet train: error: %s." % exc, file=sys.stderr)
        checkpoint = os.path.join(os.path.dirname(exc.path), CHECKPOINT_NAME)
        if os.path.isfile(checkpoint):
            print("Make room (or make the folder writable), then resume with: %s"
                  % _resume_hint(checkpoint), file=sys.stderr)
        return 1
    if out is not None:  # None on distributed workers other than worker 0
        print("run folder: %s (checkpoint.ckpt, history.json, history.csv, learning_curve.png, "
              "config.json)" % shown_path(out))
    return 0


def add_train_options(parser):
    """One option per ``TrainConfig`` field (``--batch-size`` for ``batch_size``), and the rest.

    Every field option defaults to None, which means "as the recipe (or the
    resumed checkpoint) has it"; the help shows the chapter recipe's value.
    """
    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        flag = config_flag(field.name)
        default = "" if field.default is None else " (chapter recipe: %s)" % (field.default,)
        if meta["parse"] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=meta["help"] + default)
        else:
            parser.add_argument(flag, type=meta["parse"], choices=meta["choices"],
                                metavar=meta["metavar"], help=meta["help"] + default)
    parser.add_argument("--no-resize", action="store_true", help="train at 28x28")
    parser.add_argument("--out", help="run folder (default runs/<model>-<date>-<time>); "
                        "one training at a time, and never another run's folder")
    parser.add_argument("--resume", metavar="CKPT", help="continue from this checkpoint.ckpt "
                        "(or a run folder's)")
    parser.add_argument("--checkpoint-minutes", type=_NON_NEGATIVE_NUMBER, default=10,
                        metavar="M", help="also save a checkpoint during an epoch every M "
                        "minutes (default 10; 0: only at epoch ends and on stop signals)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_eval(args):
    evaluate_run(args.params, model=args.model, resize=args.resize, data_root=args.data_root,
                 confusion=args.confusion, samples=args.samples, limit=args.limit,
                 precision=args.precision, ctx=_device(args.ctx, "eval"))
    return 0


def _add_train_parsers(sub):
    p = sub.add_parser("train", help="train a model on Fashion-MNIST (the chapter's recipe by "
                       "default) or on your own images (--data)",
                       description="Train on Fashion-MNIST, or on a folder of your own images "
                       "with --data PATH. Defaults are d2l-zh 5.11's recipe: "
                       "chapter_resnet18, resize 96, Xavier, SGD lr 0.05, batch 256, 5 epochs; "
                       "--recipe fast or best starts from another recipe, and every other "
                       "option changes it. SIGINT (Ctrl-C), SIGTERM and SIGHUP stop after the "
                       "current batch and save a checkpoint to resume from.",
                       allow_abbrev=False)
    add_train_options(p)
    p.set_defaults(func=_cmd_train)


def _add_precision_option(parser):
    """``--precision`` of the commands that run a trained network (``eval``, ``predict``)."""
    parser.add_argument("--precision", choices=INFERENCE_PRECISIONS, default="auto",
                        help="auto (default: the inference precision measured faster for this "
                        "network here, see 'gluon-resnet precision'; else fp32), bf16, fp32, or "
                        "int8 (the run's network made by 'gluon-resnet quantize')")


def _add_eval_parser(sub):
    p = sub.add_parser("eval", help="test accuracy, per-class accuracy and figures of a trained "
                       "model",
                       allow_abbrev=False)
    p.add_argument("--params", required=True, help="a checkpoint.ckpt (or a run folder), or a "
                   ".params file with --model")
    p.add_argument("--model", help="model of a .params file (a checkpoint knows its own)")
    p.add_argument("--resize", type=_POSITIVE_INT, help="input size (a checkpoint knows its own)")
    p.add_argument("--data-root", help="folder with the four Fashion-MNIST IDX files")
    p.add_argument("--limit", type=_POSITIVE_INT, help="evaluate on a subset of this many test "
                   "images")
    p.add_argument("--confusion", metavar="PNG", help="save the confusion matrix figure here")
    p.add_argument("--samples", metavar="PNG", help="save a grid of sample predictions here")
    _add_precision_option(p)
    _add_ctx_option(p)
    p.set_defaults(func=_cmd_eval)


def _cmd_predict(args):
    results = predict_files(args.params, args.paths, top_k=args.top_k,
                            notice=lambda line: print(line, file=sys.stderr),
                            precision=args.precision, ctx=_device(args.ctx, "predict"),
                            skip_bad_images=args.skip_bad_images)
    print(format_predictions(results, as_json=args.json))
    return 0


def _add_predict_parser(sub):
    p = sub.add_parser(
        "predict", help="classify image files with a trained checkpoint",
        description="One line per image: its path, the most probable class and its "
        "probability (--top-k: the K most probable, tab-separated), with the preprocessing "
        "stored with the run (size, channels, normalisation, class names).",
        allow_abbrev=False)
    p.add_argument("--params", required=True, metavar="CKPT", help="a checkpoint.ckpt (or a run "
                   "folder)")
    p.add_argument("paths", nargs="+", metavar="FILE_OR_FOLDER",
                   help="image files (PNG, JPEG, BMP) or folders searched for them")
    p.add_argument("--top-k", type=_POSITIVE_INT, default=1, metavar="K",
                   help="classes per image (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    p.add_argument("--skip-bad-images", action="store_true", help="leave out image files that "
                   "cannot be decoded, naming them, instead of stopping")
    _add_precision_option(p)
    _add_ctx_option(p)
    p.set_defaults(func=_cmd_predict)


def _add_precision_parser(sub):
    p = sub.add_parser(
        "precision", help="the precisions --precision auto chose on this CPU, and why",
        description="Show the decisions of --precision auto cached for this CPU (img/s in fp32 "
        "and bf16, training and inference); --measure times a network again.",
        allow_abbrev=False)
    p.add_argument("--model", help="only this network (with --measure: default chapter_resnet18)")
    p.add_argument("--size", type=_POSITIVE_INT, help="only this input size (with --measure: "
                   "default 96)")
    p.add_argument("--batch-size", type=_POSITIVE_INT, help="only this batch size (with "
                   "--measure: default 256)")
    p.add_argument("--measure", action="store_true",
                   help="measure this case again (at most 2 minutes)")
    p.set_defaults(func=_cmd_precision)


def _cmd_precision(args):
    if args.model is not None and args.model not in list_models():
        raise ValueError(unknown_model_message(args.model))
    status = show_decisions(args.model, args.size, args.batch_size, measure=args.measure)
    show_int8_decisions(args.model)
    return status


def _cmd_export(args):
    export_checkpoint(args.params, onnx=args.onnx, symbol=args.symbol, int8=args.int8)
    return 0


def _add_export_parser(sub):
    p = sub.add_parser(
        "export", help="write a trained network as ONNX or MXNet's symbol format",
        description="Export the network of a checkpoint, in fp32 (bf16 runs too). The exported "
        "model takes float32 NCHW pixels in [0, 1] at the training size (input 'data') and "
        "gives logits (N, classes); the run's normalisation is part of the graph. The ONNX file "
        "carries the class names and the input size in its metadata.",
        epilog="example: gluon-resnet export --params runs/x/checkpoint.ckpt --onnx model.onnx",
        allow_abbrev=False)
    p.add_argument("--params", required=True, help="a checkpoint.ckpt written by training (or "
                   "its run folder)")
    p.add_argument("--onnx", metavar="OUT.onnx", help="write an ONNX file (opset 13; needs the "
                   "onnx package)")
    p.add_argument("--symbol", metavar="PREFIX", help="write PREFIX-symbol.json and "
                   "PREFIX-0000.params (HybridBlock.export)")
    p.add_argument("--int8", action="store_true", help="export the run's int8 network (made by "
                   "'gluon-resnet quantize'; --symbol only)")
    p.set_defaults(func=_cmd_export)


def _parse_launched_train(argv):
    """Parse a launched ``train`` command as ``gluon-resnet train`` would, and check its device."""
    parser = _Parser(prog="gluon-resnet launch -- train", allow_abbrev=False)
    add_train_options(parser)
    args = parser.parse_args(argv)  # a bad option exits here, as train would
    if args.ctx is not None and args.ctx.strip().lower() not in ("cpu", "auto"):
        parse_ctx(args.ctx)  # an unavailable device: one sentence, before anything starts
    return args


def _host_needs(command):
    """What every host of ``launch --hosts`` must have for the launched ``train`` command."""
    args = _parse_launched_train(command[2:])  # after '--' and 'train'
    if args.resume:  # a run folder means its checkpoint, as in train
        args.resume = checkpoint_file(args.resume)
    files = [f for f in (args.resume, args.pretrained) if f]
    data, data_root = args.data, args.data_root
    if args.resume:
        if not os.path.isfile(args.resume):  # its data is unknown here; the hosts need the file
            return {"fashion_mnist": None, "folders": [], "files": files}
        stored = read_checkpoint_meta(args.resume)["config"]
        data, data_root = stored.get("data"), data_root or stored.get("data_root")
    if data is not None:
        return {"fashion_mnist": None, "folders": [data], "files": files}
    return {"fashion_mnist": {"root": data_root}, "folders": [], "files": files}


def _cmd_launch(args):
    worker_args = worker_command(args.train_command, _parse_launched_train)
    hosts = {}
    if args.hosts is not None:
        hosts = dict(hosts=args.hosts, ssh=args.ssh, needs=_host_needs(args.train_command))
    elif args.ssh != "ssh":
        raise ValueError("--ssh is for --hosts; without it the job runs on this machine")
    return launch(worker_args, workers=args.workers, servers=args.servers, timeout=args.timeout,
                  threads=args.threads_per_worker, python=args.python,
                  step_timeout=args.step_timeout, **hosts)


def _add_launch_parser(sub):
    p = sub.add_parser(
        "launch", help="train with several worker processes, on this machine or on several "
        "(parameter server)",
        description="Start MXNet's parameter server on 127.0.0.1, or with --hosts on the hosts "
        "of a file over ssh: one scheduler, the servers and the workers, each running "
        "'gluon-resnet train' with the options after '--' and --kvstore dist_sync. "
        "--batch-size is the global batch, split evenly over the workers; only worker 0 "
        "evaluates, prints and writes the run folder. If a process fails, the others are "
        "stopped.",
        epilog="examples: gluon-resnet launch --workers 2 -- train --no-resize --epochs 1; "
        "gluon-resnet launch --hosts hosts.txt -- train --recipe fast",
        allow_abbrev=False)
    p.add_argument("--workers", type=_POSITIVE_INT, help="worker processes (default 2; with "
                   "--hosts: as the hosts file says)")
    p.add_argument("--servers", type=_POSITIVE_INT, help="server processes (default 1; with "
                   "--hosts: one per host)")
    p.add_argument("--hosts", metavar="FILE", help="run on these hosts over ssh: one host per "
                   "line, optionally host:workers; the first runs the scheduler")
    p.add_argument("--ssh", default="ssh", metavar="COMMAND", help="ssh command and options for "
                   "--hosts (default: ssh; it must log in without a prompt)")
    p.add_argument("--python", metavar="PATH", help="Python of the processes, the same path on "
                   "every host (default: this one, %s)" % sys.executable)
    p.add_argument("--step-timeout", type=_POSITIVE_NUMBER, metavar="SECONDS",
                   help="a worker whose step waits this long for a peer that went quiet "
                   "stops (default 300; GLUON_RESNET_STEP_TIMEOUT)")
    p.add_argument("--timeout", type=_POSITIVE_NUMBER, metavar="SECONDS",
                   help="stop the whole job after this many seconds (exit status 124)")
    p.add_argument("--threads-per-worker", type=_POSITIVE_INT, metavar="N",
                   help="OMP_NUM_THREADS of each worker (default: the cores divided among them)")
    p.add_argument("train_command", nargs=argparse.REMAINDER, metavar="-- train ...",
                   help="the training command and its options")
    p.set_defaults(func=_cmd_launch)


def _cmd_models(args):
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
    parser = _Parser(
        prog="gluon-resnet",
        description="d2l-zh chapter 5.11 (ResNet) on MXNet Gluon: shapes, training, models.",
        allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_train_parsers(sub)
    _add_eval_parser(sub)

    p = sub.add_parser("shapes", help="print each layer's output shape and parameter count",
                       allow_abbrev=False)
    p.add_argument("--model", default="chapter_resnet18",
                   help="registered model name (see 'models')")
    p.add_argument("--size", type=_POSITIVE_INT, default=224,
                   help="input height and width (default 224)")
    p.add_argument("--channels", type=_POSITIVE_INT, default=1, help="input channels (default 1)")
    p.add_argument("--num-classes", type=_POSITIVE_INT, default=10,
                   help="output classes (default 10)")
    p.set_defaults(func=_cmd_shapes)

    p = sub.add_parser("models", help="list the registered models with their parameter counts",
                       allow_abbrev=False)
    p.add_argument("--num-classes", type=_POSITIVE_INT, default=None,
                   help="output classes (default: each model's own, 1000 for ImageNet nets)")
    p.set_defaults(func=_cmd_models)
    _add_export_parser(sub)
    _add_launch_parser(sub)
    _add_predict_parser(sub)
    _add_precision_parser(sub)
    add_quantize_parser(sub, _POSITIVE_INT, _NON_NEGATIVE_NUMBER)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        try:
            if args.func in (_cmd_train, _cmd_launch):  # they save, or pass signals on
                return args.func(args)
            # Anything else stops at once; a `finally` ends what it started (measuring
            # processes, temporary files), which a default SIGTERM or SIGHUP would skip.
            with StopSignals() as stop, stop.interruptible():
                return args.func(args)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not at exit
    except TrainingInterrupted as exc:
        print("\ngluon-resnet %s: stopped (%s)." % (args.command, signal_name(exc.signum)),
              file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:  # Ctrl-C between the handlers (argument parsing)
        print("\ngluon-resnet %s: stopped (Ctrl-C)." % args.command, file=sys.stderr)
        return 128 + 2
    except BrokenPipeError:
        # The reader went away (gluon-resnet models | head -2): end quietly, as a killed
        # writer would, with nothing left for Python to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # SIGPIPE
    except (ValueError, FileNotFoundError) as exc:
        # In the flag names the user typed, where the message has them (validate.in_flags).
        print("gluon-resnet %s: error: %s" % (args.command, getattr(exc, "flags", None) or exc),
              file=sys.stderr)
        return 2
    except SaveError as exc:
        print("gluon-resnet %s: error: %s." % (args.command, exc), file=sys.stderr)
        return 1
