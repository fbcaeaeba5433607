"""The chapter's ResNet-18 written in PyTorch: what a reader would use instead.

The same network as d2l-zh 5.11 (7x7/2 stem with bias, BN, ReLU, 3x3/2
max-pool; the book's ``Residual`` blocks, convolutions with bias; global
average pooling; ``Linear(512, 10)``), trained with plain SGD (learning rate
0.05) on the same batches as the MXNet sides of ``bench.py``.  Two ways a
PyTorch user runs it on a CPU: eager fp32, and eager with bf16 autocast and
the channels-last memory format (what PyTorch's CPU performance guide
recommends on CPUs with AMX).

PyTorch is an optional extra of the benchmark (``pip install -e '.[bench]'``);
gluon_resnet never imports it.
"""

import time


def _residual(nn, in_channels, channels, use_1x1conv=False, strides=1):
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, stride=strides)
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
            self.conv3 = (nn.Conv2d(in_channels, channels, 1, stride=strides)
                          if use_1x1conv else None)
            self.bn1 = nn.BatchNorm2d(channels)
            self.bn2 = nn.BatchNorm2d(channels)
            self.relu = nn.ReLU()

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return self.relu(y + (x if self.conv3 is None else self.conv3(x)))

    return Residual()


def chapter_resnet18_torch(num_classes=10, in_channels=1):
    """The chapter's network as a ``torch.nn.Sequential`` (11,178,378 parameters)."""
    from torch import nn

    def stage(cin, cout, first):
        if first:
            return nn.Sequential(_residual(nn, cin, cout), _residual(nn, cout, cout))
        return nn.Sequential(_residual(nn, cin, cout, use_1x1conv=True, strides=2),
                             _residual(nn, cout, cout))

    return nn.Sequential(
        nn.Conv2d(in_channels, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
        stage(64, 64, True), stage(64, 128, False), stage(128, 256, False),
        stage(256, 512, False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))


def measure(mode, bf16, batch_size, size, warmup, steps, seed=0):
    """Images per second of ``steps`` timed steps after ``warmup`` untimed ones.

    ``mode`` is ``"train"`` (forward, cross-entropy, backward, SGD step) or
    ``"infer"`` (forward under ``torch.inference_mode``).  With ``bf16`` the
    network and batch are channels-last and run under CPU bf16 autocast.
    """
    import torch

    torch.manual_seed(seed)
    net = chapter_resnet18_torch()
    X = torch.rand(batch_size, 1, size, size)
    y = torch.randint(0, 10, (batch_size,))
    if bf16:
        net = net.to(memory_format=torch.channels_last)
        X = X.contiguous(memory_format=torch.channels_last)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else None
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)

    def train_step():
        opt.zero_grad(set_to_none=True)
        if autocast:
            with autocast():
                loss = loss_fn(net(X), y)
        else:
            loss = loss_fn(net(X), y)
        loss.backward()
        opt.step()

    def infer_step():
        with torch.inference_mode():
            if autocast:
                with autocast():
                    net(X)
            else:
                net(X)

    if mode == "train":
        net.train()
        step = train_step
    else:
        net.eval()
        step = infer_step
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)
