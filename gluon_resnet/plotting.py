"""Figures: learning curves, confusion matrix, a grid of predictions.

Every plotting function returns the matplotlib ``Figure`` and, given ``path``, saves
it as a PNG.  matplotlib is imported lazily and without a display when
saving from the command line.
"""

import numpy as np
from mxnet.gluon import nn

from .blocks import ZeroPadShortcut
from .data.idx import get_fashion_mnist_labels

__all__ = ["plot_history", "plot_curves", "plot_error_comparison", "plot_layer_responses",
           "layer_sequence", "plot_blocks", "plot_confusion_matrix", "plot_predictions",
           "confusion_matrix", "show_fashion_mnist", "in_notebook"]


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg",) and not in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def in_notebook():
    try:
        from IPython import get_ipython

        return get_ipython() is not None and "IPKernelApp" in get_ipython().config
    except Exception:  # IPython missing or not running
        return False


def close_figure(fig):
    """Forget ``fig`` in pyplot (which keeps every figure it made until closed)."""
    _plt().close(fig)


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
    epochs = [h["epoch"] for h in history]
    fig = plot_curves({"train loss": (epochs, [h["loss"] for h in history]),
                       "train acc": (epochs, [h["train_acc"] for h in history]),
                       "test acc": (epochs, [h["test_acc"] for h in history])},
                      fig=fig, title=title)
    if 0 < len(epochs) <= 15:
        fig.axes[0].set_xticks(epochs)
    return _finish(fig, path)


def plot_curves(series, fig=None, path=None, title=None, xlim=None):
    """Curves against (fractional) epochs: losses on the left axis, the rest on the right.

    Parameters
    ----------
    series : dict
        ``label -> (xs, ys)``.  A label containing ``loss`` is drawn on the
        left axis; every other one (accuracies) on the right axis, 0 to 1.
    fig : matplotlib.figure.Figure, optional
        Draw into this figure (cleared first), for live updates.
    path : str, optional
        Save the figure there as PNG.
    title : str, optional
    xlim : (float, float), optional
        Range of the epoch axis; fixed ranges keep a live figure steady.
    """
    if fig is None:
        fig = _plt().figure(figsize=(6, 4))
    fig.clf()
    ax = fig.add_subplot(1, 1, 1)
    ax2 = ax.twinx()
    styles = {"train loss": ("tab:blue", "-"), "train acc": ("tab:purple", "--"),
              "test acc": ("tab:green", "-")}
    for k, (label, (xs, ys)) in enumerate(series.items()):
        color, style = styles.get(label, ("C%d" % k, "-"))
        target = ax if "loss" in label else ax2
        marker = "o" if len(xs) <= 20 else None
        target.plot(xs, ys, linestyle=style, marker=marker, markersize=4, color=color,
                    label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1)
    if xlim:
        ax.set_xlim(*xlim)
    lines = ax.get_lines() + ax2.get_lines()
    if lines:
        ax.legend(lines, [line.get_label() for line in lines], loc="center right")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def plot_error_comparison(histories, path=None, title=None):
    """Training error and test error per epoch of several runs, side by side.

    The figure of the degradation experiment: one colour per network, the
    same colour in both panels.

    Parameters
    ----------
    histories : dict
        ``name -> history`` (a list of per-epoch dicts with ``epoch``,
        ``train_acc`` and ``test_acc``, as ``Learner.fit`` returns).
    path : str, optional
        Save the figure there as PNG.
    title : str, optional
        Title above both panels.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for k, (name, history) in enumerate(histories.items()):
        epochs = [h["epoch"] for h in history]
        for ax, key in zip(axes, ("train_acc", "test_acc")):
            ax.plot(epochs, [100 * (1 - h[key]) for h in history], "o-", color="C%d" % k,
                    label=name, linewidth=1.8, markersize=4)
    for ax, what in zip(axes, ("training error", "test error")):
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_xlabel("epoch")
        ax.set_title(what)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("error (%)")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_layer_responses(responses, path=None, title=None):
    """The standard deviation of each 3x3 layer's response, as in He et al. 2016, figure 7.

    Top: in the order of the layers; bottom: each network's values sorted
    from largest to smallest.  One colour per network, plain networks dashed
    (names starting with "plain").

    Parameters
    ----------
    responses : dict
        ``name -> list of float`` (``summary.layer_responses`` of each network).
    path : str, optional
        Save the figure there as PNG.
    title : str, optional
        Title above both panels.
    """
    plt = _plt()
    fig, axes = plt.subplots(2, 1, figsize=(8, 6.5))
    for k, (name, stds) in enumerate(responses.items()):
        style = "--" if name.lower().startswith("plain") else "-"
        index = range(1, len(stds) + 1)
        axes[0].plot(index, stds, style, color="C%d" % k, label=name, linewidth=1.5)
        axes[1].plot(index, sorted(stds, reverse=True), style, color="C%d" % k, label=name,
                     linewidth=1.5)
    for ax, what in zip(axes, ("layer index (original)", "layer index (sorted by magnitude)")):
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # layers are whole numbers
        ax.set_xlabel(what)
        ax.set_ylabel("std")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        axes[0].set_title(title)
    return _finish(fig, path)


def _stride_label(stride):
    return ", /%d" % stride if stride > 1 else ""


def _layer_label(layer):
    """A short label of a convolution, BN or average pool, such as ``"conv 3x3, 256, g32, /2"``."""
    if isinstance(layer, nn.BatchNorm):
        return "BN"
    settings = layer._kwargs  # Gluon keeps kernel, stride and groups in no public attribute
    k, stride = settings["kernel"][0], settings["stride"][0]
    if isinstance(layer, nn.AvgPool2D):
        return "avg-pool %dx%d, /%d" % (k, k, stride)
    groups = settings["num_group"]
    return "conv %dx%d, %d%s%s" % (k, k, settings["num_filter"],
                                   ", g%d" % groups if groups > 1 else "", _stride_label(stride))


def layer_sequence(block):
    """The operations of a family unit (``blocks.BasicBlockV1`` ...) in forward order, as labels.

    Returns
    -------
    main : list of str
        The residual branch, for example ``["conv 3x3, 64", "BN", "ReLU",
        "conv 3x3, 64", "BN", "add", "ReLU"]``: ``"add"`` where the shortcut
        joins and, for post-activation units, the final ``"ReLU"``.
    shortcut : list of str or None
        The shortcut branch: ``[]`` for the identity, ``None`` for a plain
        unit without shortcut.
    """
    main = []
    last = len(block.convs) - 1
    for i, conv in enumerate(block.convs):
        drop = ["dropout"] if i == last and block.dropout is not None else []
        if block.version == 2:
            main += ["BN", "ReLU"] + drop + [_layer_label(conv)]
        else:
            main += (["ReLU"] if i else []) + drop + [_layer_label(conv), "BN"]
    if block.se is not None:
        se = block.se
        main.append("SE, %d -> %d -> %d" % (se.channels, se.squeezed, se.channels))
    relu = ["ReLU"] if block.version == 1 else []
    if block.shortcut_kind is None:
        return main + relu, None
    if block.shortcut is None:
        shortcut = []
    elif isinstance(block.shortcut, ZeroPadShortcut):
        shortcut = ["zero-pad +%d%s" % (block.shortcut.extra_channels,
                                        _stride_label(block.stride))]
    else:
        shortcut = [_layer_label(layer) for layer in block.shortcut]
    return main + ["add"] + relu, shortcut


def plot_blocks(blocks, titles=None, path=None):
    """Residual blocks side by side as flow diagrams, input at the top.

    Each operation of the residual branch is a box (convolutions blue, BN
    grey, ReLU orange, the addition green); the shortcut runs on the right
    from the input to the addition, labelled with its layers or "identity".

    Parameters
    ----------
    blocks : list of units of the family (see ``layer_sequence``)
        For example ``BasicBlockV1(64, 64)`` and ``BottleneckV1(256, 64)``.
    titles : list of str, optional
        One per block; the class names by default.
    path : str, optional
        Save the figure there as PNG.
    """
    plt = _plt()
    from matplotlib.patches import FancyBboxPatch

    titles = titles or [type(b).__name__ for b in blocks]
    sequences = [layer_sequence(b) for b in blocks]
    rows = max(len(main) for main, _ in sequences) + 2
    fig, axes = plt.subplots(1, len(blocks), figsize=(3.8 * len(blocks), 0.55 * rows + 1.2),
                             squeeze=False)
    colors = {"conv": "#cfe2f3", "BN": "#e6e6e6", "ReLU": "#fde3c8", "add": "#d4edda"}
    for ax, block, title, (main, shortcut) in zip(axes[0], blocks, titles, sequences):
        ax.set_xlim(0, 11.5)
        ax.set_ylim(-rows, 1)
        ax.axis("off")
        ax.set_title(title, fontsize=10)
        labels = ["input, %d channels" % block.in_channels] + main + [
            "output, %d channels" % block.out_channels]
        for i, label in enumerate(labels):
            y = -i
            kind = label.split()[0]
            face = colors.get(kind, "white")
            ax.add_patch(FancyBboxPatch((1.0, y - 0.3), 5.0, 0.6, boxstyle="round,pad=0.05",
                                        facecolor=face, edgecolor="black", linewidth=0.8))
            ax.text(3.5, y, "+" if label == "add" else label, ha="center", va="center",
                    fontsize=9 if label != "add" else 12)
            if i:
                ax.annotate("", xy=(3.5, y + 0.35), xytext=(3.5, y + 0.65),
                            arrowprops=dict(arrowstyle="->", linewidth=0.8))
        if shortcut is not None:
            add_y = -(1 + main.index("add"))
            ax.annotate("", xy=(6.1, add_y), xytext=(6.1, 0),
                        arrowprops=dict(arrowstyle="->", linewidth=1.2, color="tab:green",
                                        connectionstyle="bar,fraction=-0.12"))
            text = "\n".join(shortcut) if shortcut else "identity"
            ax.text(7.6, add_y / 2, "shortcut:\n" + text, ha="left", va="center", fontsize=8,
                    color="tab:green")
        else:
            ax.text(7.6, -rows / 2, "no shortcut\n(plain)", ha="left", va="center",
                    fontsize=8, color="gray")
    return _finish(fig, path)


def confusion_matrix(labels, predictions, num_classes=10):
    """``counts[i, j]``: how many examples of class ``i`` were predicted as ``j``."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels, dtype=np.int64),
                       np.asarray(predictions, dtype=np.int64)), 1)
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


def show_fashion_mnist(images, labels):
    """Draw ``images`` in one row with ``labels`` as titles, as d2lzh does.

    Parameters
    ----------
    images : NDArray or numpy.ndarray
        ``n`` images, each of any shape that holds one ``H x W`` picture
        (``(n, 28, 28)``, ``(n, 1, H, W)``, ``(n, H, W, 1)``).
    labels : sequence
        ``n`` titles: strings, or numeric labels (turned into text names).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (not shown: call ``plt.show()`` or let the notebook do it).
    """
    plt = _plt()
    if hasattr(images, "asnumpy"):  # an NDArray
        images = images.asnumpy()
    if hasattr(labels, "asnumpy"):
        labels = labels.asnumpy()
    images, labels = np.asarray(images), list(labels)
    if len(images) != len(labels) or not len(labels):
        raise ValueError("show_fashion_mnist needs as many labels as images (at least one), "
                         "got %d images and %d labels." % (len(images), len(labels)))
    if not all(isinstance(label, str) for label in labels):
        labels = get_fashion_mnist_labels(labels)
    fig, axes = plt.subplots(1, len(images), figsize=(12, 12), squeeze=False)
    for ax, img, label in zip(axes[0], images, labels):
        ax.imshow(np.squeeze(img))
        ax.set_title(label)
        ax.axes.get_xaxis().set_visible(False)
        ax.axes.get_yaxis().set_visible(False)
    return fig
