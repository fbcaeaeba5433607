"""Execute the notebooks in place and store their outputs.

Usage (from the repository root, with the project's environment)::

    python notebooks/run.py                      # every notebook, full recipes
    python notebooks/run.py resnet.ipynb         # one notebook
    python notebooks/run.py --quick              # GLUON_RESNET_QUICK=1: small subsets, 1 epoch

The notebook's metadata records how it was run (``gluon_resnet.mode``: ``full``
or ``quick``), when, on which CPU and how long it took; the tests check that
the stored outputs come from a full run.  Figures the notebooks save land in
``notebooks/figures/``.
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
    parser.add_argument("--quick", action="store_true", help="set GLUON_RESNET_QUICK=1")
    args = parser.parse_args(argv)
    names = args.notebooks or sorted(p.name for p in HERE.glob("*.ipynb"))
    for name in names:
        path = HERE / name
        if not path.is_file():
            parser.error("no notebook %s in %s; there are: %s" % (
                name, HERE, ", ".join(sorted(p.name for p in HERE.glob("*.ipynb")))))
        print("running %s (%s) ..." % (name, "quick" if args.quick else "full"), flush=True)
        seconds = execute(path, args.quick)
        print("  done in %.1f s" % seconds, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
