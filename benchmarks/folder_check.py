"""Fashion-MNIST as PNG folders against the IDX files: the same recipe, the same seeds.

Usage::

    python benchmarks/folder_check.py [--recipe fast] [--seeds 0 1] [--keep FOLDER]

Writes the 70,000 images of Fashion-MNIST as ``train/<class>/NNNNN.png`` and
``test/<class>/NNNNN.png`` (class folders named after the classes), then for
each seed trains ``gluon-resnet train --recipe RECIPE`` twice in fresh
processes: once from the IDX files, once with ``--data FOLDER`` (the image
folder path: PNG decoding, per-channel normalisation computed from the
training images).  Prints the final test accuracy of both and their
difference.  The two runs see the same images but in other orders (the
folder path numbers the examples class by class), so they agree only
statistically: the check is that the difference stays within the spread of
seeds.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

import gluon_resnet  # noqa: F401  (before MXNet: every core)
from gluon_resnet.data import TEXT_LABELS, load_fashion_mnist_arrays


def write_folders(root):
    """The data set as PNG class folders under ``root``; returns the number of files."""
    train_x, train_y, test_x, test_y = load_fashion_mnist_arrays()
    count = 0
    for split, images, labels in (("train", train_x, train_y), ("test", test_x, test_y)):
        for c, name in enumerate(TEXT_LABELS):
            folder = os.path.join(root, split, name.replace(" ", "_"))
            os.makedirs(folder, exist_ok=True)
            for i in np.flatnonzero(labels == c):
                Image.fromarray(images[i]).save(os.path.join(folder, "%05d.png" % i))
                count += 1
    return count


def train(recipe, seed, out, data=None):
    """Final test accuracy and wall seconds of one ``gluon-resnet train`` process."""
    argv = [sys.executable, "-m", "gluon_resnet", "train", "--recipe", recipe, "--seed",
            str(seed), "--out", out, "--no-progress"]
    if data:
        argv += ["--data", data]
    start = time.time()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.time() - start
    if done.returncode:
        raise SystemExit("%s failed:\n%s" % (" ".join(argv), done.stderr))
    history = json.load(open(os.path.join(out, "history.json")))
    return history[-1]["test_acc"], seconds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="fast")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--keep", help="write the PNG folders here (default: a temporary folder)")
    args = p.parse_args(argv)
    root = args.keep or tempfile.mkdtemp(prefix="fashion-png-")
    start = time.time()
    files = write_folders(root)
    print("wrote %d PNG files to %s in %.0f s" % (files, root, time.time() - start), flush=True)
    runs = tempfile.mkdtemp(prefix="folder-check-")
    print("%-5s %10s %10s %10s %9s %9s" % ("seed", "IDX", "folders", "difference", "IDX s",
                                          "folders s"))
    for seed in args.seeds:
        idx, idx_s = train(args.recipe, seed, os.path.join(runs, "idx-%d" % seed))
        png, png_s = train(args.recipe, seed, os.path.join(runs, "png-%d" % seed), data=root)
        print("%-5d %10.4f %10.4f %+10.4f %9.1f %9.1f" % (seed, idx, png, png - idx, idx_s, png_s),
              flush=True)


if __name__ == "__main__":
    main()
