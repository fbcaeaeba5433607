"""Test the tests: break the package on purpose and check that the suite notices.

    python tests/mutations.py              # every mutation (a quarter of an hour on 2 cores)
    python tests/mutations.py --list       # their names and the tests each one runs
    python tests/mutations.py NAME ...     # some of them
    python tests/mutations.py --baseline   # also run each selection unmutated: it must pass

Each mutation copies ``gluon_resnet/``, ``gluon_resnet_command.py``, ``tests/``, ``pytest.ini``
and ``setup.py`` to a temporary folder,
changes one piece of code there (the text it replaces must occur exactly once), and runs the
tests that should catch it against the copy (``PYTHONPATH`` puts the copy first, also for
the subprocesses the tests start).  A mutation is caught when pytest reports failed tests;
errors alone (an import, a fixture) count as a broken mutation, not as a catch, and a
mutation whose tests all skip here (the bf16 ones on a CPU without bf16) is reported as
not run, neither caught nor missed.  The working tree is never changed.  Exit status 0 when
every mutation that ran was caught.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import namedtuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Mutation = namedtuple("Mutation", "name what file old new tests env hide_torch baseline")


def mutation(name, what, file, old, new, tests, env=None, hide_torch=False, baseline=True):
    """``baseline=False``: the selection fails unmutated too (``env`` alone must fail it)."""
    return Mutation(name, what, file, old, new, tests, env or {}, hide_torch, baseline)


MUTATIONS = [
    mutation("permissive-unpickler",
             "the .pth unpickler hands out any global a pickle names (PyTorch hidden)",
             "gluon_resnet/weights/pth.py",
             "        except KeyError:\n            pass\n        allowed = sorted(",
             "        except KeyError:\n"
             "            return pickle.Unpickler.find_class(self, module, name)\n"
             "        allowed = sorted(",
             ["tests/test_weights.py", "-k", "pickle"], hide_torch=True),
    mutation("bn-mean-var-swapped",
             "weight loading puts a BN's running mean in its variance and back (PyTorch hidden)",
             "gluon_resnet/pretrained.py",
             '("running_mean", "running_mean"),\n'
             '                        ("running_var", "running_var")',
             '("running_mean", "running_var"),\n'
             '                        ("running_var", "running_mean")',
             ["tests/test_pretrained.py", "-m", "not slow"], hide_torch=True),
    mutation("bf16-eval-shifted",
             "gluon-resnet eval in bf16 reports the next class for every image",
             "gluon_resnet/evaluation.py",
             "    labels, preds = predict(net, test_iter, ctx)\n",
             "    labels, preds = predict(net, test_iter, ctx)\n"
             "    preds = (preds + (precision == 'bf16')) % len(names)\n",
             ["tests/test_precision.py", "-k", "evaluation"]),
    mutation("bf16-output-zero",
             "every Dense layer outputs zeros once bf16 is on",
             "gluon_resnet/precision.py",
             '        amp.init(target_dtype="bfloat16")\n',
             '        amp.init(target_dtype="bfloat16")\n'
             '        from mxnet.gluon import nn\n'
             '        dense = nn.Dense.hybrid_forward\n'
             '        nn.Dense.hybrid_forward = lambda self, F, x, *a, **k: dense(self, F, x, *a, '
             '**k) * 0\n',
             ["tests/test_precision.py", "-k", "agrees_with_fp32"]),
    mutation("bf16-output-half",
             "every Dense layer outputs half its value once bf16 is on",
             "gluon_resnet/precision.py",
             '        amp.init(target_dtype="bfloat16")\n',
             '        amp.init(target_dtype="bfloat16")\n'
             '        from mxnet.gluon import nn\n'
             '        dense = nn.Dense.hybrid_forward\n'
             '        nn.Dense.hybrid_forward = lambda self, F, x, *a, **k: dense(self, F, x, *a, '
             '**k) * 0.5\n',
             ["tests/test_precision.py", "-k", "outputs_agree"]),
    mutation("residual-0.9-with-regen-switch",
             "the family's residual branch is scaled by 0.9, tests run with "
             "GLUON_RESNET_REGEN_GOLDEN=1 (the golden files must stay as they were)",
             "gluon_resnet/blocks.py",
             "        return array_ops(F).add(out, x if self.shortcut is None "
             "else self.shortcut(x))\n",
             "        return array_ops(F).add(out * 0.9, x if self.shortcut is None "
             "else self.shortcut(x))\n",
             ["tests/test_models.py", "-k", "golden"], env={"GLUON_RESNET_REGEN_GOLDEN": "1"},
             baseline=False),
    mutation("residual-0.9",
             "the family's residual branch is scaled by 0.9",
             "gluon_resnet/blocks.py",
             "        return array_ops(F).add(out, x if self.shortcut is None "
             "else self.shortcut(x))\n",
             "        return array_ops(F).add(out * 0.9, x if self.shortcut is None "
             "else self.shortcut(x))\n",
             ["tests/test_models.py", "-k", "golden"]),
    mutation("resume-skips-a-batch",
             "a run resumed inside an epoch skips the batch after the one it stopped at",
             "gluon_resnet/training.py",
             "        done = self.batch  # resuming inside an epoch",
             "        done = self.batch + (self.batch > 0)  # resuming inside an epoch",
             ["tests/test_training.py", "-k", "stop_signal_saves and not SIGTERM"]),
    mutation("old-checkpoint-sums-dropped",
             "a checkpoint saved before callbacks kept their own state resumes without the "
             "running epoch's sums",
             "gluon_resnet/training.py",
             '"partial": meta.get("partial")}}',
             '"partial": None}}',
             ["tests/test_training.py", "-k", "from_before_callbacks"]),
    mutation("dropout-rng-not-reseeded",
             "training no longer reseeds MXNet's generator before each batch",
             "gluon_resnet/training.py",
             "            mx.random.seed(batch_seed(self.seed, self.epoch, self.batch))\n",
             "            pass\n",
             ["tests/test_training.py", "-k", "dropout"]),
    mutation("run-seed-not-given-to-the-learner",
             "run_training builds its Learner without the run's seed (MXNet is never reseeded)",
             "gluon_resnet/experiment.py",
             "                      seed=config.seed,\n",
             "",
             ["tests/test_training.py", "-k", "dropout"]),
    mutation("folder-classes-not-settled",
             "run_training builds its network for the configured classes, not the folder's",
             "gluon_resnet/experiment.py",
             "    config = settle_config(config, job, train_iter)\n",
             "",
             ["tests/test_predict.py", "-k", "folder_run"]),
    mutation("gradient-summed-not-averaged-over-workers",
             "distributed workers divide the kvstore's gradient sum by their own batch only",
             "gluon_resnet/distributed/worker.py",
             "        super().step(batch_size * self.num_workers, ignore_stale_grad)",
             "        super().step(batch_size, ignore_stale_grad)",
             ["tests/test_distributed.py", "-k", "without_batch_norm"]),
    mutation("optimizer-state-not-restored",
             "loading a checkpoint leaves the optimizer's momentum at zero",
             "gluon_resnet/checkpoint.py",
             '                trainer.load_states(os.path.join(work, "trainer.states"))\n',
             "                pass\n",
             ["tests/test_training.py", "-k", "resume_continues"]),
    mutation("bf16-stem",
             "the convolution that reads the image computes in bf16 like the others",
             "gluon_resnet/layers.py",
             "if numpy_mode() or convolution is None or convolution is F.Convolution:",
             "if True:",
             ["tests/test_precision.py", "-k", "stays_fp32"]),
    mutation("momentum-dropped",
             "the optimizer built from a TrainConfig gets no momentum (sgd and nag without it)",
             "gluon_resnet/experiment.py",
             '        params["momentum"] = config.momentum\n',
             "        pass\n",
             ["tests/test_experiment.py", "-k", "build_trainer"]),
    mutation("weight-decay-dropped",
             "the optimizer built from a TrainConfig gets no weight decay",
             "gluon_resnet/experiment.py",
             '    params = {"learning_rate": config.lr, "wd": config.wd}',
             '    params = {"learning_rate": config.lr}',
             ["tests/test_experiment.py", "-k", "build_trainer"]),
    mutation("weight-decay-lost-on-the-way",
             "run_training builds its trainer from a copy of the config without weight decay",
             "gluon_resnet/experiment.py",
             "    trainer = build_trainer(config, net, job.kv)\n",
             "    trainer = build_trainer(dataclasses.replace(config, wd=0.0), net, job.kv)\n",
             ["tests/test_experiment.py", "-k", "recipe_trains"]),
    mutation("label-smoothing-lost-on-the-way",
             "run_training trains with plain cross-entropy whatever the label smoothing",
             "gluon_resnet/experiment.py",
             "                      loss=build_loss(config), eval_flip=config.tta,",
             "                      eval_flip=config.tta,",
             ["tests/test_experiment.py", "-k", "recipe_trains"]),
    mutation("constant-schedule-cycles",
             "a run with the constant schedule (the chapter's) gets the one-cycle schedule",
             "gluon_resnet/experiment.py",
             ' if config.schedule == "onecycle" else []\n',
             "\n",
             ["tests/test_experiment.py", "-k", "recipe_trains"]),
    mutation("one-cycle-off-by-one",
             "the one-cycle schedule sets the rate of the next step, not of this one",
             "gluon_resnet/callbacks.py",
             "        step = learner.epoch * per_epoch + learner.batch\n",
             "        step = learner.epoch * per_epoch + learner.batch + 1\n",
             ["tests/test_callbacks.py", "-k", "every_step"]),
    mutation("pth-offset-ignored",
             "the .pth reader views every tensor from the start of its storage (PyTorch hidden)",
             "gluon_resnet/weights/pth.py",
             "        flat[offset:], shape=size,",
             "        flat, shape=size,",
             ["tests/test_weights.py"], hide_torch=True),
    mutation("pth-bound-ignores-offset",
             "the .pth reader's bounds check forgets the offset (PyTorch hidden)",
             "gluon_resnet/weights/pth.py",
             "    last = offset + sum(",
             "    last = sum(",
             ["tests/test_weights.py"], hide_torch=True),
    mutation("inf-loss-not-checked",
             "the divergence check stops on a NaN loss but not on an infinite one",
             "gluon_resnet/callbacks.py",
             "        if not math.isfinite(value):\n",
             "        if math.isnan(value):\n",
             ["tests/test_callbacks.py", "-k", "not_finite"]),
    mutation("shared-run-lock",
             "the run folder's lock is a shared flock, which a second training also gets",
             "gluon_resnet/runlock.py",
             "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
             "fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)",
             ["tests/test_runlock.py", "-m", "not slow"]),
    mutation("bn-statistics-summed-over-workers",
             "distributed workers sum the BN running statistics over the workers, not average them",
             "gluon_resnet/distributed/worker.py",
             "                a /= self.kv.num_workers * len(arrays)\n",
             "                a /= len(arrays)\n",
             ["tests/test_distributed.py", "-k", "average_the_batch_norm"]),
    mutation("legacy-eval-counts-parts",
             "evaluation on several devices in legacy mode counts each device's part once more",
             "gluon_resnet/training.py",
             "            correct += _correct(scores, ys).as_in_context(ctxs[0])\n",
             "            correct += _correct(scores, ys).as_in_context(ctxs[0])\n"
             "            n += ys.shape[0] * (len(parts) > 1 and not mx.util.is_np_array())\n",
             ["tests/test_training.py", "-k", "two_devices_counts"]),
    mutation("predict-top-k-ascending",
             "gluon-resnet predict lists the least likely classes first",
             "gluon_resnet/predict.py",
             'np.argsort(-p, kind="stable")',
             'np.argsort(p, kind="stable")',
             ["tests/test_predict.py", "-k", "predicts_as_its_network"]),
    mutation("export-std-forgotten",
             "the exported graph subtracts the run's mean but does not divide by its std",
             "gluon_resnet/export.py",
             "            x = F.broadcast_div(F.broadcast_sub(x, mean), std)\n",
             "            x = F.broadcast_sub(x, mean)\n",
             ["tests/test_export.py", "-k", "normalisation"]),
    mutation("folder-std-without-the-mean",
             "an image folder's std is the root mean square of its pixels, the mean not taken off",
             "gluon_resnet/data/folders.py",
             "np.maximum(total_sq / pixels - mean * mean, 0.0)",
             "np.maximum(total_sq / pixels, 0.0)",
             ["tests/test_folders.py", "-k", "normalisation"]),
    mutation("folder-split-leaks-a-file",
             "a single tree's split puts one held-out image of each class in the training set too",
             "gluon_resnet/data/folders.py",
             "        train[name] = [files[i] for i in sorted(order[n_test:])]\n",
             "        train[name] = [files[i] for i in sorted(order[max(0, n_test - 1):])]\n",
             ["tests/test_folders.py", "-k", "splits_the_same_way or val"]),
    mutation("loader-same-order-every-epoch",
             "the training data is shuffled once: every epoch sees the first epoch's order",
             "gluon_resnet/data/loader.py",
             "epoch_rng(self.seed, epoch, SHUFFLE)",
             "epoch_rng(self.seed, 0, SHUFFLE)",
             ["tests/test_data.py", "-k", "shuffle"]),
    mutation("equal-parts-keep-the-rest",
             "distributed shards keep the examples that do not split evenly (unequal step counts)",
             "gluon_resnet/data/loader.py",
             "        end = total - total % self.num_parts if self.equal_parts else total\n",
             "        end = total\n",
             ["tests/test_distributed.py", "-k", "equal_parts"]),
    mutation("auto-chooses-slower-bf16",
             "--precision auto takes bf16 when it is up to 5 percent slower than fp32",
             "gluon_resnet/autoprecision.py",
             '    return "bf16" if bf16 >= fp32 * (1 + THRESHOLD) else "fp32"',
             '    return "bf16" if bf16 * (1 + THRESHOLD) >= fp32 else "fp32"',
             ["tests/test_autoprecision.py", "-k", "five_percent"]),
    mutation("auto-ignores-the-channels",
             "--precision auto answers a colour network's case from a greyscale measurement",
             "gluon_resnet/autoprecision.py",
             ' and entry["channels"] == case.channels)',
             ")",
             ["tests/test_autoprecision.py", "-k", "reuses"]),
    mutation("worker-batch-not-divided",
             "each distributed worker loads the global batch instead of its share",
             "gluon_resnet/distributed/worker.py",
             "        return global_batch // self.num_workers\n",
             "        return global_batch\n",
             ["tests/test_distributed.py", "-k", "without_batch_norm and workers"]),
    mutation("handler-over-ignored-signal",
             "a stop-signal handler replaces a disposition inherited as ignored (nohup)",
             "gluon_resnet/signals.py",
             "                if signal.getsignal(signum) != signal.SIG_IGN:"
             "  # nohup, background jobs\n",
             "                if True:\n",
             ["tests/test_signals.py", "-k", "ignored_signal_stays_ignored"]),
    mutation("run-files-keep-mkstemp-mode",
             "files written atomically keep mkstemp's 0600 whatever the umask",
             "gluon_resnet/checkpoint.py",
             "        os.chmod(tmp, 0o666 & ~_umask())\n",
             "        os.chmod(tmp, 0o600)\n",
             ["tests/test_checkpoint.py", "-k", "mode_of_the_users_new_files"]),
    mutation("model-name-without-suggestions",
             "an unknown model name is answered without the closest names",
             "gluon_resnet/models.py",
             "    close = difflib.get_close_matches(str(name), list_models(), n=3, cutoff=0.6)\n",
             "    close = []\n",
             ["tests/test_models.py", "-k", "closest_names"]),
    mutation("int8-calibration-skipped",
             "gluon-resnet quantize calibrates nothing (MXNet's default calib_mode 'none')",
             "gluon_resnet/quantize.py",
             'CALIB_MODE = "naive"\n',
             'CALIB_MODE = "none"\n',
             ["tests/test_quantize.py", "-k", "calibrated"]),
    mutation("int8-auto-ignores-bf16",
             "auto takes int8 when it beats fp32, even where bf16 runs faster still",
             "gluon_resnet/int8.py",
             '    return entry["int8"] >= entry["fp32"] * factor * (1 + THRESHOLD)\n',
             '    return entry["int8"] >= entry["fp32"] * (1 + THRESHOLD)\n',
             ["tests/test_quantize.py", "-k", "against_bf16"]),
    mutation("int8-auto-without-rival",
             "load_trained compares int8 with fp32 only, not with auto's bf16 decision",
             "gluon_resnet/trained.py",
             "        chosen = _auto_int8(saved, config, data, ctx, notice, size, "
             "precision.decision)\n",
             "        chosen = _auto_int8(saved, config, data, ctx, notice, size, None)\n",
             ["tests/test_quantize.py", "-k", "cached_bf16"]),
    mutation("int8-listing-any-machine",
             "gluon-resnet precision lists the int8 speeds of other CPUs as this one's",
             "gluon_resnet/int8.py",
             'e["key"].get("machine") == here\n',
             'e["key"].get("machine") != "\\0"\n',
             ["tests/test_quantize.py", "-k", "lists_this"]),
    mutation("command-imports-first",
             "the gluon-resnet command imports the package before it handles stop signals",
             "gluon_resnet_command.py",
             "    previous = {}\n    for signum in _STOP_SIGNALS:",
             "    import gluon_resnet  # noqa: F401\n"
             "    previous = {}\n    for signum in _STOP_SIGNALS:",
             ["tests/test_signals.py", "-k", "imports_mxnet"]),
    mutation("command-unignores-nohup",
             "the gluon-resnet command handles a SIGHUP that nohup made ignored while it starts",
             "gluon_resnet_command.py",
             "        if signal.getsignal(signum) != signal.SIG_IGN:",
             "        if True:",
             ["tests/test_signals.py", "-k", "imports_mxnet"]),
    mutation("entry-point-in-package",
             "setup.py makes the console script import the package first again",
             "setup.py",
             '"gluon-resnet=gluon_resnet_command:main"',
             '"gluon-resnet=gluon_resnet.cli:main"',
             ["tests/test_package.py", "-k", "installed_command"]),
    mutation("commands-default-sigterm",
             "commands other than train keep the default SIGTERM (measuring processes outlive it)",
             "gluon_resnet/cli.py",
             "            with StopSignals() as stop, stop.interruptible():\n"
             "                return args.func(args)\n",
             "            return args.func(args)\n",
             ["tests/test_signals.py", "-k", "precision_command"]),
]


def _copy(folder):
    """The package, the command's entry point, the tests, pytest.ini and setup.py, copied into
    ``folder``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(ROOT, "gluon_resnet"), os.path.join(folder, "gluon_resnet"),
                    ignore=ignore)
    shutil.copytree(os.path.join(ROOT, "tests"), os.path.join(folder, "tests"), ignore=ignore)
    for name in ("pytest.ini", "setup.py", "gluon_resnet_command.py"):
        shutil.copy(os.path.join(ROOT, name), folder)


def _apply(folder, m):
    path = os.path.join(folder, m.file)
    with open(path) as f:
        text = f.read()
    if text.count(m.old) != 1:
        raise SystemExit("mutation %s: the text to replace occurs %d times in %s (expected once); "
                         "update tests/mutations.py to the code" % (m.name, text.count(m.old),
                                                                    m.file))
    with open(path, "w") as f:
        f.write(text.replace(m.old, m.new))


def _goldens(folder):
    golden = os.path.join(folder, "tests", "golden")
    return {name: hashlib.sha256(open(os.path.join(golden, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(golden))}


def _run(m, mutate):
    """``(verdict, seconds, output)`` of the mutation's tests on a (mutated) copy."""
    with tempfile.TemporaryDirectory(prefix="gluon_resnet-mutation-") as folder:
        _copy(folder)
        if mutate:
            _apply(folder, m)
        paths = [folder]
        if m.hide_torch:  # as on a machine without PyTorch
            os.makedirs(os.path.join(folder, "no_torch"))
            with open(os.path.join(folder, "no_torch", "torch.py"), "w") as f:
                f.write("raise ImportError('PyTorch hidden by tests/mutations.py')\n")
            paths.insert(0, os.path.join(folder, "no_torch"))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), **m.env)
        where = subprocess.run([sys.executable, "-c", "import gluon_resnet; "
                                "print(gluon_resnet.__file__)"], cwd=folder, env=env,
                               capture_output=True, text=True)
        if not where.stdout.startswith(folder):
            raise SystemExit("the copy in %s is not what Python imports: %s%s"
                             % (folder, where.stdout, where.stderr))
        before = _goldens(folder)
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                               *m.tests], cwd=folder, env=env, capture_output=True, text=True)
        seconds = time.monotonic() - start
        output = done.stdout + done.stderr
        if _goldens(folder) != before:
            return "golden files rewritten", seconds, output
        summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        if done.returncode == 0 and " passed" not in summary and " skipped" in summary:
            verdict = "skipped"  # every selected test skips on this machine (say, no bf16)
        elif done.returncode == 0:
            verdict = "passed"
        elif done.returncode == 1 and " failed" in summary:
            verdict = "failed"
        else:  # errors only (a fixture, an import): the mutation broke more than it should
            verdict = "error (exit %d): %s" % (done.returncode, summary)
        return verdict, seconds, output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and stop")
    parser.add_argument("--baseline", action="store_true",
                        help="also run each selection on an unmutated copy (it must pass)")
    parser.add_argument("--verbose", action="store_true", help="print pytest's output")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTATIONS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error("no mutation %s; there are: %s" % (", ".join(unknown), ", ".join(known)))
    chosen = [known[n] for n in args.names] or MUTATIONS
    if args.list:
        for m in chosen:
            print("%-32s %s\n%-32s tests: %s" % (m.name, m.what, "", " ".join(m.tests)))
        return 0
    missed = skipped = 0
    for m in chosen:
        if args.baseline and m.baseline:
            verdict, seconds, output = _run(m, mutate=False)
            print("%-32s unmutated: %s (%.0f s)" % (m.name, verdict, seconds), flush=True)
            if verdict != "passed":
                print(output[-3000:])
                missed += 1
                continue
        verdict, seconds, output = _run(m, mutate=True)
        if verdict == "skipped":  # nothing here can tell: not a catch, not a miss
            skipped += 1
            print("%-32s not run here (%.0f s): its tests skip on this machine"
                  % (m.name, seconds), flush=True)
            continue
        caught = verdict == "failed"
        missed += not caught
        print("%-32s %s (%.0f s): %s" % (m.name, "caught" if caught else "NOT CAUGHT", seconds,
                                         verdict), flush=True)
        if args.verbose or not caught:
            print(output[-3000:])
    ran = len(chosen) - skipped
    print("%d of %d mutations caught%s" % (ran - missed, ran, "; %d not run here (their tests "
          "skip on this machine)" % skipped if skipped else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
