"""Throughput of data-parallel training with worker processes on this machine.

Usage::

    python benchmarks/bench_distributed.py [--model cifar_resnet20_v1] [--limit 2000]
        [--batch-size 100] [--epochs 2] [--rounds 2] [--workers 1 2] [--json out.json] [--tiny]

Variants, each a fresh ``gluon-resnet`` run on a balanced Fashion-MNIST subset
at 28x28 (``--no-resize``), with the same global batch:

- ``1 process``: ``gluon-resnet train`` (no kvstore), all cores;
- ``N worker(s)``: ``gluon-resnet launch --workers N --servers 1 -- train``,
  the cores divided among the workers (``OMP_NUM_THREADS``), gradients added
  up by one server over loopback TCP (``dist_sync``).

Throughput is the images of the last epoch divided by its training time
(from worker 0's ``history.json``; the first epoch also pays for building
and hybridizing the network and initialising the kvstore).  Variants are
alternated round by round and the medians reported.

On one machine the workers share its cores, so more workers cannot be
faster: the table shows the cost of the parameter server.  The traffic
columns let one estimate scaling on several machines on paper: with
``dist_sync`` and ``update_on_kvstore=False`` every worker pushes its
gradients and pulls their sum each step, ``2 x 4 x P`` bytes for ``P``
float32 parameters, and the servers together receive and send ``N`` times
that.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

DATA_DIR = "/usr/share/datasets/fashion-mnist"
FULL = dict(model="cifar_resnet20_v1", limit=2000, batch_size=100, epochs=2, rounds=2)
TINY = dict(model="cifar_resnet20_v1", limit=200, batch_size=20, epochs=2, rounds=1)


def trainable_parameters(model):
    """Trainable float32 parameters of ``model`` with a 1-channel 28x28 input."""
    import gluon_resnet  # noqa: F401  (thread setting before MXNet)
    import mxnet as mx
    from gluon_resnet.models import get_model

    net = get_model(model, num_classes=10)
    net.initialize()
    net(mx.nd.zeros((1, 1, 28, 28)))
    return sum(int(p.data().size) for p in net.collect_params().values() if p.grad_req != "null")


def run_variant(workers, settings, data_root):
    """One run; returns images per second of the last epoch and the wall time."""
    train = ["train", "--model", settings["model"], "--no-resize", "--limit",
             str(settings["limit"]), "--batch-size", str(settings["batch_size"]), "--epochs",
             str(settings["epochs"]), "--no-progress", "--seed", "0"]
    if data_root:
        train += ["--data-root", data_root]
    with tempfile.TemporaryDirectory(prefix="bench-dist-") as tmp:
        out = os.path.join(tmp, "run")
        if workers == 0:
            argv = [sys.executable, "-m", "gluon_resnet", *train, "--out", out]
        else:
            argv = [sys.executable, "-m", "gluon_resnet", "launch", "--workers", str(workers),
                    "--servers", "1", "--timeout", "3600", "--", *train, "--out", out]
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit("run with %d worker(s) failed:\n%s\n%s"
                             % (workers, done.stdout[-3000:], done.stderr[-3000:]))
        with open(os.path.join(out, "history.json")) as f:
            last = json.load(f)[-1]
    images = settings["limit"] - settings["limit"] % max(workers, 1)
    return {"img_per_s": images / last["train_time"], "epoch_s": last["train_time"],
            "wall_s": wall, "test_acc": last["test_acc"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to launch (the 1-process run is always included)")
    parser.add_argument("--data-root", default=DATA_DIR if os.path.isdir(DATA_DIR) else None)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--tiny", action="store_true", help="smoke test: 200 images, 1 round")
    args = parser.parse_args(argv)
    settings = dict(TINY if args.tiny else FULL)
    for key in settings:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    params = trainable_parameters(settings["model"])
    steps = -(-settings["limit"] // settings["batch_size"])
    variants = [0] + [w for w in args.workers if w > 0]
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print("# bench_distributed %s, %s, Python %s, %d cores, load average %.2f at start"
          % (datetime.datetime.now().isoformat(timespec="seconds"), platform.machine(),
             platform.python_version(), os.cpu_count() or 1, load))
    print("# %s: %s trainable parameters (%.2f MB float32); global batch %d, %d images, "
          "%d epochs, %d round(s)" % (settings["model"], format(params, ","), params * 4 / 1e6,
                                      settings["batch_size"], settings["limit"],
                                      settings["epochs"], settings["rounds"]), flush=True)
    results = {w: [] for w in variants}
    for r in range(settings["rounds"]):
        for w in variants:
            res = run_variant(w, settings, args.data_root)
            results[w].append(res)
            print("# round %d, %s: %.1f img/s (last epoch %.2f s, whole run %.1f s)"
                  % (r + 1, label(w), res["img_per_s"], res["epoch_s"], res["wall_s"]),
                  flush=True)
    base = statistics.median(x["img_per_s"] for x in results[0])
    rows = []
    print()
    print("| variant | img/s | vs 1 process | ms per step | MB pushed + pulled per worker "
          "per step | MB through the servers per step |")
    print("|---|---|---|---|---|---|")
    for w in variants:
        speed = statistics.median(x["img_per_s"] for x in results[w])
        per_worker = 0 if w == 0 else 2 * 4 * params
        row = {"variant": label(w), "workers": w, "img_per_s": speed, "ratio": speed / base,
               "ms_per_step": 1000 * settings["batch_size"] / speed,
               "bytes_per_worker_step": per_worker, "bytes_servers_step": per_worker * w,
               "runs": results[w]}
        rows.append(row)
        print("| %s | %.1f | %.2f | %.1f | %s | %s |"
              % (row["variant"], speed, row["ratio"], row["ms_per_step"],
                 "-" if w == 0 else "%.2f" % (per_worker / 1e6),
                 "-" if w == 0 else "%.2f" % (per_worker * w / 1e6)))
    print("\nSteps per epoch: %d. Per step each worker pushes %.2f MB of gradients and pulls "
          "%.2f MB of sums (2 x 4 bytes x %s parameters)."
          % (steps, 4 * params / 1e6, 4 * params / 1e6, format(params, ",")))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": settings, "parameters": params, "rows": rows}, f, indent=1)
    return 0


def label(workers):
    return "1 process" if workers == 0 else "%d worker%s + 1 server" % (
        workers, "" if workers == 1 else "s")


if __name__ == "__main__":
    sys.exit(main())
