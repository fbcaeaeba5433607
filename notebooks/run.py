"""Execute the notebooks in place and store their outputs.

Usage (from the repository root, with the project's environment)::

    python notebooks/run.py                      # every notebook, full recipes
    python notebooks/run.py resnet.ipynb         # one notebook
    python notebooks/run.py --quick              # GLUON_RESNET_QUICK=1: small subsets, 1 epoch

A full run replaces the stored notebook; a quick run never does: it writes
``notebooks/quick/<name>`` (or into ``--out FOLDER``).  The notebook's
metadata records how it was run (``gluon_resnet.mode``: ``full`` or
``quick``), when, on which CPU and how long it took; the tests check that the
stored outputs come from a full run.  Figures the notebooks save (full runs
only) land in ``notebooks/figures/``.
"""

import argparse
import datetime
import os
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def execute(path, quick, timeout=None, out=None):
    """Run the notebook at ``path`` top to bottom; write it to ``out`` (default: in place).

    Returns the seconds it took.  Raises ``nbclient.exceptions.CellExecutionError``
    on the first failing cell (the partly executed notebook is not written).
    """
    import nbformat
    from nbclient import NotebookClient

    from gluon_resnet.devices import cpu_model

    path = pathlib.Path(path)
    nb = nbformat.read(path, as_version=4)
    previous = os.environ.get("GLUON_RESNET_QUICK")
    if quick:
        os.environ["GLUON_RESNET_QUICK"] = "1"
    else:
        os.environ.pop("GLUON_RESNET_QUICK", None)
    try:
        start = time.time()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        seconds = time.time() - start
    finally:
        if previous is None:
            os.environ.pop("GLUON_RESNET_QUICK", None)
        else:
            os.environ["GLUON_RESNET_QUICK"] = previous
    nb.metadata["gluon_resnet"] = {
        "mode": "quick" if quick else "full",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(), "cores": os.cpu_count(), "seconds": round(seconds, 1)}
    nbformat.write(nb, str(out or path))
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="names in notebooks/ (default: all)")
    parser.add_argument("--quick", action="store_true", help="set GLUON_RESNET_QUICK=1 and "
                        "write to notebooks/quick/ (the stored full runs stay as they are)")
    parser.add_argument("--out", metavar="FOLDER", help="write the executed notebooks here "
                        "(default: in place for full runs, notebooks/quick/ for quick ones)")
    args = parser.parse_args(argv)
    names = args.notebooks or sorted(p.name for p in HERE.glob("*.ipynb"))
    folder = args.out or (HERE / "quick" if args.quick else None)
    for name in names:
        path = HERE / name
        if not path.is_file():
            parser.error("no notebook %s in %s; there are: %s" % (
                name, HERE, ", ".join(sorted(p.name for p in HERE.glob("*.ipynb")))))
        out = None if folder is None else pathlib.Path(folder) / name
        print("running %s (%s) ..." % (name, "quick" if args.quick else "full"), flush=True)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
        seconds = execute(path, args.quick, out=out)
        print("  done in %.1f s: %s" % (seconds, out or path), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
