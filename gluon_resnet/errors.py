"""``RunError``: a run cannot start.

It lives here, below everything that raises it, so that a low module (the
run lock) raises it without importing ``config`` (which imports the model
zoo); ``gluon_resnet.config`` and ``gluon_resnet.experiment`` export it too.
"""

__all__ = ["RunError"]


class RunError(ValueError):
    """A run cannot start: bad configuration, occupied folder, wrong checkpoint."""
