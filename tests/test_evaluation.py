"""evaluation.py: predict's labels and classes over batches, and the accuracy of each class.

The references are computed here: the network's outputs on the whole set at once and
numpy's argmax, and accuracies counted by hand.
"""

import numpy as np
import pytest

import mxnet as mx
from mxnet.gluon import nn

from gluon_resnet.evaluation import per_class_accuracy, predict


def test_predict_gives_every_batchs_labels_and_classes_in_order():
    net = nn.Dense(4)
    net.initialize(mx.init.Normal(1.0))
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(23, 6)).astype(np.float32)
    y = rng.randint(0, 4, size=23)
    expected = net(mx.nd.array(X)).asnumpy().argmax(axis=1)
    assert len(set(expected.tolist())) > 1  # the classes differ: an order mix-up shows
    batches = [(mx.nd.array(X[i:i + 10]), mx.nd.array(y[i:i + 10])) for i in range(0, 23, 10)]
    labels, preds = predict(net, batches)
    assert labels.dtype == preds.dtype == np.int64
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_array_equal(preds, expected)


def test_predict_over_no_batches_says_so():
    net = nn.Dense(2)
    net.initialize()
    with pytest.raises(ValueError, match="yielded no examples"):
        predict(net, [])


def test_per_class_accuracy_counts_each_class_and_marks_absent_ones():
    labels = np.array([0, 0, 0, 1, 1, 3, 3, 3, 3])
    preds = np.array([0, 1, 0, 1, 1, 3, 0, 0, 2])
    # class 0: 2 of 3 right; class 1: 2 of 2; class 2: absent; class 3: 1 of 4
    acc = per_class_accuracy(labels, preds, num_classes=4)
    np.testing.assert_allclose(acc[[0, 1, 3]], [2 / 3, 1.0, 1 / 4])
    assert np.isnan(acc[2]) and acc.shape == (4,)
