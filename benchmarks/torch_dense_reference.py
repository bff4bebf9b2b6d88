"""A PyTorch cross-check of the fidelity protocol's dense phase (optional; needs torch, not a tfimp dependency).

tfimp's own transcription of the protocol in ``fidelity_fashion_mnist.py``
(model H, full Fashion-MNIST normalised with the training mean/std, batch
128, ``torch.optim.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)``,
6 epochs, x0.1 at 50% and 75% of the iterations), written directly in
PyTorch, to compare the dense accuracy of PyTorch and of
``tfimp.optimizers.TorchSGD`` on the same protocol:

    python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
    /tmp/torchenv/bin/python benchmarks/torch_dense_reference.py --seed 0

Prints the test accuracy after each epoch.
"""

import argparse
import glob
import gzip
import os
import struct

import numpy as np
import torch
from torch import nn


def read_idx(path: str) -> np.ndarray:
    with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as handle:
        data = handle.read()
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data[4 + 4 * ndim:], np.uint8).reshape(shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    find = lambda stem: sorted(glob.glob(os.path.join(args.data_dir, stem + "*")))[0]  # noqa: E731
    x_train = read_idx(find("train-images")).astype(np.float32) / 255
    x_test = read_idx(find("t10k-images")).astype(np.float32) / 255
    mean, std = x_train.mean(), x_train.std()
    x_train = torch.tensor((x_train - mean) / std)[:, None]
    x_test = torch.tensor((x_test - mean) / std)[:, None]
    y_train = torch.tensor(read_idx(find("train-labels")).astype(np.int64))
    y_test = torch.tensor(read_idx(find("t10k-labels")).astype(np.int64))

    torch.manual_seed(args.seed)
    layers, channels = [], 1
    for index, (filters, stride) in enumerate([(16, 2), (32, 2), (64, 1), (128, 1)]):
        if index == 3:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.Conv2d(channels, filters, 3, stride, 1, bias=False), nn.BatchNorm2d(filters), nn.ReLU()]
        channels = filters
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    total = 6 * -(-len(x_train) // 128)
    boundaries = [int(0.5 * total), int(0.75 * total)]  # iterations, as tfimp's step schedule
    generator = torch.Generator().manual_seed(args.seed)
    step = 0
    for epoch in range(6):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(x_train), 128):
            for group in optimizer.param_groups:
                group["lr"] = 0.1 * 0.1 ** sum(step >= b for b in boundaries)
            batch = order[start:start + 128]
            loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
        print(f"seed {args.seed} epoch {epoch + 1}: test accuracy {100 * accuracy:.2f}%", flush=True)


if __name__ == "__main__":
    main()
