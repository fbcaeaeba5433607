"""``python -m gluon_resnet``: the same as the ``gluon-resnet`` command."""

import sys

from .cli import main

sys.exit(main())
