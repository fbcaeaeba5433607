"""Does the image's convolution pay for staying fp32 under bf16 on this CPU?

Usage::

    python benchmarks/stem_check.py [--rounds 3] [--steps 6] [--models chapter_resnet18:96 ...]

``gluon_resnet.layers.StemConv2D`` computes the first convolution of every
network in fp32 when bf16 AMP is on (the layers after it follow in fp32 until
the next convolution).  This script trains each network in bf16 both ways,
as shipped ("stem fp32") and with the stem computing in bf16 like every other
convolution ("stem bf16"), each variant in a fresh process, the variants
alternated, ``--rounds`` times, and prints the median img/s of each and their
ratio.  Batch 256, random 1-channel images; ``--warmup`` untimed steps, then
``--steps`` timed ones.  Run it on an idle machine with bf16 (AMX or
AVX512-BF16); elsewhere it says so and stops.
"""

import argparse
import os
import statistics
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DEFAULT_MODELS = ("chapter_resnet18:96", "compact_resnet8_w32:28", "compact_resnet9:28")

WORKER = """
import sys, time
sys.path.insert(0, {root!r})
import gluon_resnet
from gluon_resnet import _mxnet
from gluon_resnet.experiment import TrainConfig, build_network, build_trainer
from gluon_resnet.layers import StemConv2D
from gluon_resnet.precision import enable_bf16
from gluon_resnet.training import Learner
from mxnet.gluon import nn
mx = _mxnet.mx
model, size, variant, warmup, steps = sys.argv[1], int(sys.argv[2]), sys.argv[3], \\
    int(sys.argv[4]), int(sys.argv[5])
if variant == "stem bf16":
    StemConv2D.hybrid_forward = nn.Conv2D.hybrid_forward
enable_bf16()
config = TrainConfig(model=model, batch_size=256, resize=size, precision="bf16")
ctx = mx.cpu()
net = build_network(config, [ctx])
trainer = build_trainer(config, net)
X = mx.nd.random.uniform(shape=(256, 1, size, size))
y = mx.nd.array(range(256)) % 10
Learner(net, [(X, y)] * warmup, None, trainer, [ctx], handle_signals=False).fit(1)
mx.nd.waitall()
start = time.perf_counter()
Learner(net, [(X, y)] * steps, None, trainer, [ctx], handle_signals=False).fit(1)
mx.nd.waitall()
print("IMG_PER_S", 256 * steps / (time.perf_counter() - start))
"""

VARIANTS = ("stem fp32", "stem bf16")


def run_worker(model, size, variant, warmup, steps):
    """img/s of one fresh process training ``model`` in bf16 with the stem as ``variant``."""
    code = WORKER.format(root=os.path.abspath(ROOT))
    done = subprocess.run([sys.executable, "-c", code, model, str(size), variant, str(warmup),
                           str(steps)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit("%s at %d, %s failed:\n%s" % (model, size, variant, done.stderr))
    return float(done.stdout.split("IMG_PER_S")[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                   help="MODEL:SIZE pairs (default: %s)" % " ".join(DEFAULT_MODELS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    from gluon_resnet._cpu import cpuinfo
    from gluon_resnet.precision import bf16_kernels

    kernels = bf16_kernels()
    if kernels == "fp32 fallback":
        raise SystemExit("this CPU runs no bf16 (neither AMX-BF16 nor AVX512-BF16): nothing "
                         "to compare")
    cases = []
    for item in args.models:
        model, _, size = item.partition(":")
        cases.append((model, int(size or 96)))
    cpu = cpuinfo("model name") or "unknown CPU"
    print("%s, bf16 on %s kernels, batch 256, %d rounds x %d steps, load %.2f"
          % (cpu, kernels, args.rounds, args.steps, os.getloadavg()[0]))
    print("%-26s %12s %12s %8s" % ("network", VARIANTS[0], VARIANTS[1], "ratio"))
    for model, size in cases:
        seen = {v: [] for v in VARIANTS}
        for r in range(args.rounds):
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                seen[variant].append(run_worker(model, size, variant, args.warmup, args.steps))
        a, b = (statistics.median(seen[v]) for v in VARIANTS)
        print("%-26s %12.1f %12.1f %7.2fx" % ("%s at %d" % (model, size), a, b, a / b))


if __name__ == "__main__":
    main()
