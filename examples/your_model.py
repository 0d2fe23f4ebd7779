"""Sparse training for your own model: sparsify an MLP and a small CNN's classifier, then
train both on MNIST with SET's evolution once per epoch.

    python examples/your_model.py                     # 3 epochs on all of MNIST (a few minutes)
    python examples/your_model.py --epochs 1 --train-size 2000 --test-size 500   # seconds

Everything synapses-specific is in three lines: ``sparsify`` (once), ``Evolution`` (once)
and ``evolution.step()`` (after each optimizer step). The rest is a plain PyTorch loop. It
needs torch and synapses only; MNIST is read from the repository's ``data/mnist`` (or
``--data``), the four idx files as ``.xz`` or ``.gz``.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import lzma
import time
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

import synapses


class MNIST(NamedTuple):
    train_x: torch.Tensor  # (n, 784) float32, standardised
    train_y: torch.Tensor  # (n,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor


def read_idx(path: Path) -> torch.Tensor:
    """An idx file (MNIST's format: big-endian dimensions, then uint8 values), xz or gzip."""
    opener = lzma.open if path.suffix == ".xz" else gzip.open
    with opener(path, "rb") as handle:
        raw = handle.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(raw[4 + 4 * dims :]), dtype=torch.uint8).reshape(shape)


def load_mnist(folder: Path) -> MNIST:
    def file(name: str) -> Path:
        found = [folder / f"{name}{suffix}" for suffix in (".xz", ".gz") if (folder / f"{name}{suffix}").exists()]
        if not found:
            raise SystemExit(
                f"error: no {name}.xz or .gz in {folder}; give the folder of MNIST's idx files with --data"
            )
        return found[0]

    def images(name: str) -> torch.Tensor:
        return (read_idx(file(name)).reshape(-1, 784).float() / 255 - 0.1307) / 0.3081

    return MNIST(
        images("train-images-idx3-ubyte"),
        read_idx(file("train-labels-idx1-ubyte")).long(),
        images("t10k-images-idx3-ubyte"),
        read_idx(file("t10k-labels-idx1-ubyte")).long(),
    )


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10)
    )


class SmallCNN(nn.Module):
    """Two convolutions and a classifier of two Linear layers; only the classifier is sparsified."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Linear(32 * 4 * 4, 512), nn.ReLU(), nn.Linear(512, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.view(-1, 1, 28, 28)))


def train(model: nn.Module, data, epochs: int, batch_size: int = 100, report_every: float = 5.0) -> list[float]:
    """SGD with momentum; evolution once per epoch. Returns the test accuracy after each epoch.

    Prints a line after each epoch, and within an epoch every ``report_every`` seconds (an
    epoch on all of MNIST takes a minute or more here)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    steps_per_epoch = -(-len(data.train_y) // batch_size)
    evolution = synapses.Evolution(model, optimizer, every=steps_per_epoch)  # SET: once per epoch
    accuracies = []
    for epoch in range(1, epochs + 1):
        model.train()
        started = last_line = time.monotonic()
        order = torch.randperm(len(data.train_y))
        for number, batch in enumerate(order.split(batch_size), start=1):
            optimizer.zero_grad()
            F.cross_entropy(model(data.train_x[batch]), data.train_y[batch]).backward()
            optimizer.step()
            evolution.step()
            if time.monotonic() - last_line >= report_every:
                last_line = time.monotonic()
                images = min(number * batch_size, len(order))
                print(f"  epoch {epoch} of {epochs}: {images:,} of {len(order):,} training images", flush=True)
        model.eval()
        with torch.no_grad():
            accuracies.append((model(data.test_x).argmax(1) == data.test_y).float().mean().item())
        print(
            f"  epoch {epoch} of {epochs}: test accuracy {100 * accuracies[-1]:.2f}% "
            f"({time.monotonic() - started:.0f} s)",
            flush=True,
        )
    return accuracies


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=None, help="first N training images (default: all)")
    parser.add_argument("--test-size", type=int, default=None, help="first N test images (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data", type=Path, default=Path("data/mnist"), help="folder of MNIST's idx files (default: data/mnist)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # sparsify says what it replaced
    torch.manual_seed(args.seed)
    full = load_mnist(args.data)
    data = MNIST(
        full.train_x[: args.train_size],
        full.train_y[: args.train_size],
        full.test_x[: args.test_size],
        full.test_y[: args.test_size],
    )

    results = {}
    print("MLP 784-1000-1000-10, hidden layers sparsified (epsilon 20), output dense:")
    results["sparse MLP"] = train(synapses.sparsify(mlp(), epsilon=20), data, args.epochs)
    print("CNN, classifier's first layer sparsified to 90% (the output layer stays dense):")
    results["CNN, sparse classifier"] = train(
        synapses.sparsify(SmallCNN(), sparsity=0.9, distribution="uniform"), data, args.epochs
    )
    for name, accuracies in results.items():
        print(f"{name}: test accuracy per epoch {', '.join(f'{100 * a:.2f}%' for a in accuracies)}")
    return results


if __name__ == "__main__":
    main()
