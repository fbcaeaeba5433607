"""Where a training step's time goes: MXNet's per-operator profile of one network.

Usage::

    python benchmarks/profile_ops.py [--model chapter_resnet18] [--size 96] [--batch-size 256]
                                     [--precision fp32|bf16] [--steps 3] [--top 25]
    python benchmarks/profile_ops.py --int8-run RUN [--batch-size 256] [--steps 3]

Builds the network as ``gluon-resnet train`` does, trains ``--warmup`` steps
untimed, then ``--steps`` steps under ``mx.profiler`` with aggregate
statistics, and prints the operators that took the most time (total ms over
the profiled steps, calls, ms per call) and the wall time per step.  With
``DNNL_VERBOSE=1`` in the environment oneDNN also prints each primitive it
runs, with its kernel (``brgconv:avx512_core_amx_bf16``, ``jit:avx512_core``,
...) and time.  Run one precision per process: bf16 AMP cannot be undone.

With ``--int8-run RUN`` it profiles inference of the int8 network that
``gluon-resnet quantize`` wrote into RUN (hybridized, as ``predict`` runs it)
at the run's input size, instead of training.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import gluon_resnet  # noqa: E402, F401  (before MXNet: threads and AMX)
from gluon_resnet import _mxnet  # noqa: E402
from gluon_resnet.checkpoint import checkpoint_file, read_checkpoint  # noqa: E402
from gluon_resnet.experiment import TrainConfig, build_network, build_trainer  # noqa: E402
from gluon_resnet.int8 import load_int8  # noqa: E402
from gluon_resnet.precision import resolve_precision, enable_bf16  # noqa: E402
from gluon_resnet.trained import data_description  # noqa: E402
from gluon_resnet.training import Learner  # noqa: E402

mx = _mxnet.mx


def parse_table(text, top):
    """Rows ``(name, calls, total ms)`` of the profiler's aggregate table, largest first."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        # name, calls, total, min, max, avg: the last five fields are numbers.
        if len(parts) < 6:
            continue
        try:
            calls, total = int(parts[-5]), float(parts[-4])
        except ValueError:
            continue
        rows.append((" ".join(parts[:-5]), calls, total))
    rows.sort(key=lambda r: -r[2])
    return rows[:top]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="chapter_resnet18")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--data", choices=["random", "fashion-mnist"], default="random",
                   help="the batch: uniform random pixels, or the first Fashion-MNIST batch")
    p.add_argument("--int8-run", metavar="RUN", help="profile inference of RUN's int8 network "
                   "(made by gluon-resnet quantize) instead of training")
    args = p.parse_args(argv)

    ctx = mx.cpu()
    if args.int8_run:
        return profile_int8(args, ctx)
    precision = resolve_precision(args.precision, [ctx])
    if precision == "bf16":
        enable_bf16()
    config = TrainConfig(model=args.model, batch_size=args.batch_size, resize=args.size,
                         precision=precision)
    net = build_network(config, [ctx])
    trainer = build_trainer(config, net)
    channels = 1
    if args.data == "random":
        X = mx.nd.random.uniform(shape=(args.batch_size, channels, args.size, args.size))
        y = mx.nd.array(range(args.batch_size), dtype="int32") % 10
    else:
        from gluon_resnet.data import load_data_fashion_mnist

        X, y = next(iter(load_data_fashion_mnist(args.batch_size, resize=args.size)[0]))
    learner = Learner(net, [(X, y)] * args.warmup, None, trainer, [ctx], handle_signals=False)
    learner.fit(1)
    mx.nd.waitall()

    learner = Learner(net, [(X, y)] * args.steps, None, trainer, [ctx], handle_signals=False)
    seconds, table = _profiled(lambda: learner.fit(1))
    _report("%s, %s, %s batch %d, %dx%d" % (args.model, precision, args.data, args.batch_size,
                                             args.size, args.size), args, seconds, table)


def _profiled(work):
    """``(seconds, aggregate table)`` of ``work()`` run under ``mx.profiler``."""
    path = os.path.join(tempfile.mkdtemp(), "profile.json")
    mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=path)
    mx.profiler.set_state("run")
    start = time.perf_counter()
    work()
    mx.nd.waitall()
    seconds = time.perf_counter() - start
    mx.profiler.set_state("stop")
    return seconds, mx.profiler.dumps(reset=True)


def _report(what, args, seconds, table):
    print("%s, AMX %s: %.3f s per step (%.1f img/s)" % (
        what, _mxnet.AMX[1], seconds / args.steps, args.batch_size * args.steps / seconds))
    print("%-44s %7s %11s %10s" % ("operator", "calls", "ms/step", "ms/call"))
    for name, calls, total in parse_table(table, args.top):
        print("%-44s %7d %11.1f %10.2f" % (name[:44], calls, total / args.steps, total / calls))


def profile_int8(args, ctx):
    """Inference steps of RUN's int8 network under the profiler (random pixels in [0, 1])."""
    saved = read_checkpoint(checkpoint_file(args.int8_run))
    net, _ = load_int8(saved, ctx)
    net.hybridize(static_alloc=True)
    data = data_description(saved.meta)  # what the network takes: channels, (height, width)
    X = mx.nd.random.uniform(shape=(args.batch_size, data.channels) + tuple(data.size))

    def steps(count):
        for _ in range(count):
            net(X).wait_to_read()

    steps(args.warmup)
    seconds, table = _profiled(lambda: steps(args.steps))
    _report("%s int8 inference, batch %d, %dx%d" % (saved.meta["config"]["model"],
                                                    args.batch_size, *data.size),
            args, seconds, table)


if __name__ == "__main__":
    main()
