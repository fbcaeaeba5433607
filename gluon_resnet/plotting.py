"""Figures: learning curves, confusion matrix, a grid of predictions.

Every function returns the matplotlib ``Figure`` and, given ``path``, saves
it as a PNG.  matplotlib is imported lazily and without a display when
saving from the command line.
"""

import numpy as np

__all__ = ["plot_history", "plot_confusion_matrix", "plot_predictions", "confusion_matrix"]


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg",) and not _in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _in_notebook():
    try:
        from IPython import get_ipython

        return get_ipython() is not None and "IPKernelApp" in get_ipython().config
    except Exception:  # IPython missing or not running
        return False


def _finish(fig, path):
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def plot_history(history, path=None, title=None, fig=None):
    """Loss (left axis) and train and test accuracy (right axis) per epoch.

    Parameters
    ----------
    history : list of dict
        As returned by ``train_ch5`` or ``Learner.fit``.
    path : str, optional
        Save the figure there as PNG.
    title : str, optional
    fig : matplotlib.figure.Figure, optional
        Draw into this figure (cleared first), for live updates in notebooks.
    """
    plt = _plt()
    if fig is None:
        fig = plt.figure(figsize=(6, 4))
    fig.clf()
    ax = fig.add_subplot(1, 1, 1)
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["loss"] for h in history], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h["train_acc"] for h in history], "s--", color="tab:purple", label="train acc")
    ax2.plot(epochs, [h["test_acc"] for h in history], "^-", color="tab:green", label="test acc")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1)
    if epochs:
        ax.set_xticks(epochs if len(epochs) <= 15 else None)
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [l.get_label() for l in lines], loc="center right")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def confusion_matrix(labels, predictions, num_classes=10):
    """``counts[i, j]``: how many examples of class ``i`` were predicted as ``j``."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return counts


def plot_confusion_matrix(counts, class_names, path=None, title=None):
    """Heat map of a confusion matrix with counts in the cells, rows = true class."""
    plt = _plt()
    counts = np.asarray(counts)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(counts, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    threshold = counts.max() / 2 if counts.size else 0
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if counts[i, j] > threshold else "black")
    ax.set_title(title or "confusion matrix")
    return _finish(fig, path)


def plot_predictions(images, true_labels, predicted_labels, path=None, ncols=8):
    """A grid of images titled ``predicted`` over ``true``; wrong ones in red.

    Parameters
    ----------
    images : array of shape (N, H, W) or (N, 1, H, W)
    true_labels, predicted_labels : list of str
    """
    plt = _plt()
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[:, 0]
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 2.0 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(images[k], cmap="gray_r")
        ok = true_labels[k] == predicted_labels[k]
        ax.set_title("%s\n(%s)" % (predicted_labels[k], true_labels[k]), fontsize=8,
                     color="black" if ok else "red")
    fig.suptitle("predicted (true); wrong in red", fontsize=10)
    return _finish(fig, path)
