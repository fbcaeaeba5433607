"""Write the golden outputs (``tests/golden/<model>.json``), then exit.

    python tests/regen_golden.py                 # every golden model
    python tests/regen_golden.py resnet18_v1     # some of them

Run it after an intended change to a network, and commit the new files with the change,
saying why the outputs moved.  The tests only compare with these files (``goldens.py``).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gluon_resnet  # noqa: E402,F401  (before MXNet: it sets the thread count)
import numpy as np  # noqa: E402

from goldens import GOLDEN_DIR, GOLDEN_MODELS, golden_path, golden_record  # noqa: E402


def main(argv=None):
    names = list(sys.argv[1:] if argv is None else argv) or GOLDEN_MODELS
    unknown = [n for n in names if n not in GOLDEN_MODELS]
    if unknown:
        print("regen_golden.py: error: %s not golden models; they are: %s"
              % (", ".join(unknown), ", ".join(GOLDEN_MODELS)), file=sys.stderr)
        return 2
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name in names:
        path, record = golden_path(name), golden_record(name)
        if path.exists():
            old = np.array(json.loads(path.read_text())["output"])
            change = "largest change %.3g" % float(np.abs(old - np.array(record["output"])).max())
        else:
            change = "new"
        path.write_text(json.dumps(record, indent=1) + "\n")
        print("wrote %s (%s)" % (path, change))
    return 0


if __name__ == "__main__":
    sys.exit(main())
