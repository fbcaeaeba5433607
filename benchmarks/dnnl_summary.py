"""Where oneDNN's time goes: a summary of ``DNNL_VERBOSE=1`` output.

Usage::

    DNNL_VERBOSE=1 python benchmarks/profile_ops.py --model compact_resnet9 --size 28 \\
        --warmup 2 --steps 3 | python benchmarks/dnnl_summary.py --steps 5 [--top 15]

Reads oneDNN's ``dnnl_verbose,exec,...`` lines (any other line is ignored)
from the files given, or standard input, and prints

- per kind of work (``conv forward_training``, ``conv backward_weights``,
  ``batch_normalization``, ``reorder``, ...): milliseconds per step, the
  share of all oneDNN time and, for convolutions, the multiply-accumulates
  per second they reached (from each call's shape: batch, channels, groups,
  output size, kernel);
- the ``--top`` kernels (implementation, direction, shape) by total time.

``--steps`` is the number of training steps the lines cover (warm-up steps
included, since oneDNN prints those too); the times are divided by it.
"""

import argparse
import collections
import re
import sys


def _field(shape, key):
    """The number after ``key`` in oneDNN's verbose shape notation, or None.

    For example ``oc`` in ``mb256_g32ic128oc128_ih4oh4kh3sh1dh0ph1_iw4ow4kw3sw1dw0pw1``
    is 128; a key counts only where no letter precedes it (``oh``, not ``h``).
    """
    m = re.search(r"(?<![a-z])%s(\d+)" % key, shape)
    return int(m.group(1)) if m else None


def conv_macs(shape):
    """Multiply-accumulates of one convolution call described by ``shape``; None if unreadable.

    ``batch * out_channels * (in_channels / groups) * output points * kernel
    points``; a width (or depth) left out of the notation counts as the
    height's (or 1).
    """
    mb, ic, oc, oh, kh = (_field(shape, k) for k in ("mb", "ic", "oc", "oh", "kh"))
    if None in (mb, ic, oc, oh, kh):
        return None
    groups = _field(shape, "g") or 1
    ow, kw = _field(shape, "ow") or oh, _field(shape, "kw") or kh
    od, kd = _field(shape, "od") or 1, _field(shape, "kd") or 1
    return mb * oc * (ic // groups) * od * oh * ow * kd * kh * kw


def read_calls(lines):
    """``(primitive, implementation, direction, shape, ms)`` of each executed primitive."""
    for line in lines:
        if not line.startswith("dnnl_verbose,exec,"):
            continue
        fields = line.rstrip("\n").split(",")
        if len(fields) < 7:
            continue
        try:
            ms = float(fields[-1])
        except ValueError:
            continue
        yield fields[3], fields[4], fields[5], fields[-2], ms


def summarise(calls):
    """``(total ms, kinds, kernels)``: per-kind ``[ms, macs]`` and per-kernel ``[calls, ms]``."""
    kinds = collections.defaultdict(lambda: [0.0, 0])
    kernels = collections.defaultdict(lambda: [0, 0.0])
    total = 0.0
    for primitive, impl, direction, shape, ms in calls:
        total += ms
        if primitive == "convolution":
            kind = "conv " + direction
            kinds[kind][1] += conv_macs(shape) or 0
        else:
            kind = primitive
        kinds[kind][0] += ms
        kernel = kernels[(primitive, impl, direction, shape)]
        kernel[0] += 1
        kernel[1] += ms
    return total, kinds, kernels


def report(total, kinds, kernels, steps, top, out=sys.stdout):
    """Print the summary (see the module's docstring)."""
    if total == 0:
        raise SystemExit("dnnl_summary: no dnnl_verbose exec lines in the input; "
                         "run the program with DNNL_VERBOSE=1")
    print("oneDNN time per step: %.1f ms (over %d steps)" % (total / steps, steps), file=out)
    print("%-32s %10s %6s %12s" % ("work", "ms/step", "share", "GMAC/s"), file=out)
    for kind, (ms, macs) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        rate = "%12.0f" % (macs / ms / 1e6) if macs and ms else "%12s" % ""
        print("%-32s %10.1f %5.0f%% %s" % (kind, ms / steps, 100 * ms / total, rate), file=out)
    print("", file=out)
    print("%8s %6s  %s" % ("ms", "calls", "kernel"), file=out)
    for key, (n, ms) in sorted(kernels.items(), key=lambda kv: -kv[1][1])[:top]:
        print("%8.1f %6d  %s" % (ms, n, " | ".join(key)), file=out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", help="files of DNNL_VERBOSE output (default: stdin)")
    p.add_argument("--steps", type=int, default=1,
                   help="training steps the output covers, warm-up included (default 1)")
    p.add_argument("--top", type=int, default=15, help="kernels to list (default 15)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be a positive integer; got %d" % args.steps)
    if args.files:
        lines = []
        for name in args.files:
            try:
                with open(name) as f:
                    lines.extend(f)
            except OSError as e:
                p.error("cannot read %s: %s" % (name, e.strerror))
    else:
        lines = sys.stdin
    total, kinds, kernels = summarise(read_calls(lines))
    report(total, kinds, kernels, args.steps, args.top)


if __name__ == "__main__":
    main()
