"""``gluon-resnet predict`` on a folder of images, fp32 against int8, end to end.

Usage::

    python benchmarks/predict_check.py --params RUN [--images 1000] [--rounds 3]

RUN is a trained run folder that ``gluon-resnet quantize`` has quantized.
Writes the first ``--images`` Fashion-MNIST test images as PNG files (resized
by ``predict`` as the run was trained), then, in each round, runs
``python -m gluon_resnet predict --params RUN --precision P FOLDER`` in a
fresh process for P = fp32 and int8, taking turns (fp32 first in even
rounds).  Each process is timed whole (interpreter start, imports, loading
the network, decoding the files, inference, printing), and inside it the
``predict_files`` call alone; a separate fresh process times decoding the
files alone, the part int8 cannot speed up.  Prints the medians, their
ratios, and the top-1 accuracy and agreement of the two precisions (the
file names carry the labels).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_PREFIX = "PREDICT_CHECK "
PRECISIONS = ("fp32", "int8")


def write_images(root, count):
    """The first ``count`` test images as ``root/NNNNN-LABEL.png``; returns their labels."""
    import numpy as np
    from PIL import Image

    sys.path.insert(0, ROOT)
    from gluon_resnet.data import load_fashion_mnist_arrays

    _, _, images, labels = load_fashion_mnist_arrays()
    for i in range(count):
        Image.fromarray(images[i]).save(os.path.join(root, "%05d-%d.png" % (i, labels[i])))
    return np.asarray(labels[:count])


def worker(params, folder, precision):
    """Inside a fresh process: time ``predict_files`` (or decoding alone) and print JSON."""
    start = time.perf_counter()
    sys.path.insert(0, ROOT)
    import gluon_resnet  # noqa: F401  (before MXNet: every core)
    from gluon_resnet.predict import collect_image_files, predict_files

    imported = time.perf_counter() - start
    if precision == "decode":
        from gluon_resnet.data.images import BadImages, decode_into_memory, probe_images, \
            thread_pool
        from gluon_resnet.checkpoint import checkpoint_file, read_checkpoint_meta
        from gluon_resnet.trained import data_description

        data = data_description(read_checkpoint_meta(checkpoint_file(params)))
        files = collect_image_files([folder])
        start = time.perf_counter()
        with thread_pool() as pool:
            bad = BadImages(False)
            probe_images(files, pool, bad)
            decode_into_memory(files, data.size, data.channels, True, pool, bad)
        print(RESULT_PREFIX + json.dumps({"decode_s": time.perf_counter() - start}))
        return
    start = time.perf_counter()
    results = predict_files(params, [folder], precision=precision, notice=lambda line: None)
    call = time.perf_counter() - start
    top1 = {os.path.basename(r["path"]): r["top"][0]["class"] for r in results}
    print(RESULT_PREFIX + json.dumps({"import_s": imported, "predict_s": call, "top1": top1}))


def run(argv, what):
    """``(wall seconds, the worker's JSON)`` of one fresh process."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit("%s failed:\n%s" % (what, done.stderr))
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    return wall, (json.loads(lines[0][len(RESULT_PREFIX):]) if lines else None)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--params", required=True, help="a quantized run folder")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--worker", choices=PRECISIONS + ("decode",), help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.params, args.folder, args.worker)
    if not os.path.isfile(os.path.join(args.params, "int8.zip")):
        raise SystemExit("--params %s has no int8 network: run gluon-resnet quantize --params %s "
                         "first" % (args.params, args.params))
    folder = tempfile.mkdtemp(prefix="predict-check-")
    try:
        compare(args, folder, write_images(folder, args.images))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def compare(args, folder, labels):
    """The rounds and the printed medians (see the module's docstring)."""
    sys.path.insert(0, ROOT)
    from gluon_resnet._cpu import cpuinfo
    from gluon_resnet.data import TEXT_LABELS

    print("%s, %d cores, load %.2f at the start; %d PNG files in %s; %d rounds"
          % (cpuinfo("model name") or "unknown CPU", os.cpu_count(), os.getloadavg()[0],
             args.images, folder, args.rounds), flush=True)
    command = {p: [] for p in PRECISIONS}
    call, decode, top1 = {p: [] for p in PRECISIONS}, [], {}
    for r in range(args.rounds):
        for precision in PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]:
            wall, _ = run([sys.executable, "-m", "gluon_resnet", "predict", "--params",
                           args.params, "--precision", precision, folder],
                          "gluon-resnet predict --precision %s" % precision)
            command[precision].append(wall)
            _, inner = run([sys.executable, __file__, "--params", args.params, "--folder",
                            folder, "--worker", precision], "the %s worker" % precision)
            call[precision].append(inner["predict_s"])
            top1[precision] = inner["top1"]
        decode.append(run([sys.executable, __file__, "--params", args.params, "--folder",
                           folder, "--worker", "decode"], "the decoding worker")[1]["decode_s"])
        print("round %d: command fp32 %.2f s, int8 %.2f s; predict_files fp32 %.2f s, int8 "
              "%.2f s; decoding %.2f s" % (r + 1, command["fp32"][-1], command["int8"][-1],
                                           call["fp32"][-1], call["int8"][-1], decode[-1]),
              flush=True)
    med = {k: {p: statistics.median(v[p]) for p in PRECISIONS}
           for k, v in (("command", command), ("call", call))}
    names = sorted(top1["fp32"])
    truth = [TEXT_LABELS[int(n.split("-")[1].split(".")[0])] for n in names]
    acc = {p: sum(top1[p][n] == t for n, t in zip(names, truth)) / len(names) for p in PRECISIONS}
    agree = sum(top1["fp32"][n] == top1["int8"][n] for n in names) / len(names)
    print("medians: whole command fp32 %.2f s, int8 %.2f s (int8 %.2fx faster); predict_files "
          "fp32 %.2f s, int8 %.2f s (%.2fx); decoding alone %.2f s"
          % (med["command"]["fp32"], med["command"]["int8"],
             med["command"]["fp32"] / med["command"]["int8"], med["call"]["fp32"],
             med["call"]["int8"], med["call"]["fp32"] / med["call"]["int8"],
             statistics.median(decode)))
    print("top-1 accuracy on the %d files: fp32 %.4f, int8 %.4f; agreement %.4f"
          % (len(names), acc["fp32"], acc["int8"], agree))
    assert len(labels) == len(names)


if __name__ == "__main__":
    main()
