"""Data references -> normalized tensors: ``load(ref, allowed_roots=...) -> TensorData``.

Kinds (``contract.DataRef.kind``):
  cifar10 / cifar100  python batches (restricted unpickler), an images+labels .npz, or
                      the repo's JPEG-bytes .npz (only the selected images are decoded)
  mnist / fashion-mnist  IDX files (train-*/t10k-*, gzip or not)
  imagefolder         root/<class>/<image> (or root/<split>/<class>/...), Pillow
  tensors             .npz or .safetensors with x and y
  synthetic           seeded N(0, 1) images of `shape`, uniform labels in num_classes

Normalization: x/255 (uint8 sources) then (x - mean) / std per channel with the
standard statistics of CIFAR-10 (0.4914, 0.4822, 0.4465)/(0.2470, 0.2435, 0.2616),
CIFAR-100 (0.5071, 0.4865, 0.4409)/(0.2673, 0.2564, 0.2762), MNIST 0.1307/0.3081 and
Fashion-MNIST 0.2860/0.3530; imagefolder and tensors use the per-channel mean/std of
the loaded samples (per feature-set scalar for (N, D) data); synthetic data is already N(0, 1).

``limit`` keeps a seeded random subset (seed = ref.seed) of that many samples rather
than the first N, because the JPEG npz and image folders are sorted by class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from initscore.contract import DataRef
from initscore.data import readers
from initscore.data.readers import STATS, DataCaps, RawData, clear_caches
from initscore.dataref import (
    confine,
    default_cifar10_root,
    default_fashion_mnist_root,
    default_mnist_root,
    parse_ref,
    resolve_root,
    validate_ref,
)
from initscore.errors import DataError

__all__ = [
    "DataCaps",
    "TensorData",
    "load",
    "validate_ref",
    "default_cifar10_root",
    "default_mnist_root",
    "default_fashion_mnist_root",
    "normalize",
    "clear_caches",
]

MAX_SYNTHETIC_ELEMENTS = 1 << 27  # 512 MiB of float32


@dataclass(frozen=True, eq=False)
class TensorData:
    """Normalized samples: x float32 (N, C, H, W) or (N, D), y int64 (N,) in [0, num_classes)."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    name: str
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32 or self.x.dim() < 2:
            raise DataError(f"{self.name}: x must be float32 with a sample axis, got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.dtype != torch.int64 or self.y.dim() != 1 or len(self.y) != len(self.x):
            raise DataError(f"{self.name}: y must be int64 of shape ({len(self.x)},), got {self.y.dtype} {tuple(self.y.shape)}")
        if len(self.x) == 0:
            raise DataError(f"{self.name}: no samples")
        if self.num_classes < 1:
            raise DataError(f"{self.name}: num_classes must be >= 1")
        lo, hi = int(self.y.min()), int(self.y.max())
        if lo < 0 or hi >= self.num_classes:
            raise DataError(f"{self.name}: label out of range: labels span {lo}..{hi}, num_classes {self.num_classes}")

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return (
            f"TensorData(name={self.name!r}, n={len(self.x)}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes})"
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample shape, e.g. (3, 32, 32)."""
        return tuple(self.x.shape[1:])

    def _check_batch(self, batch_size: int) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size > len(self):
            raise DataError(f"{self.name}: batch_size {batch_size} > {len(self)} samples; lower it or raise 'limit'")

    def batch(self, batch_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A seeded random sample of `batch_size` distinct samples: (x, y)."""
        self._check_batch(batch_size)
        g = torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(len(self), generator=g)[:batch_size]
        return self.x[idx], self.y[idx]

    def batches(self, batch_size: int, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Infinite iterator of batches: a fresh seeded permutation per epoch, incomplete tails dropped."""
        self._check_batch(batch_size)
        g = torch.Generator().manual_seed(int(seed))
        n = len(self)
        while True:
            perm = torch.randperm(n, generator=g)
            for start in range(0, n - batch_size + 1, batch_size):
                idx = perm[start : start + batch_size]
                yield self.x[idx], self.y[idx]

    def split(self, n_heldout: int, seed: int = 0) -> tuple["TensorData", "TensorData"]:
        """Seeded disjoint split into (train, heldout) with `n_heldout` held-out samples."""
        if isinstance(n_heldout, bool) or not isinstance(n_heldout, int) or not 1 <= n_heldout < len(self):
            raise DataError(f"{self.name}: n_heldout must be in 1..{len(self) - 1}, got {n_heldout!r}")
        g = torch.Generator().manual_seed(int(seed))
        perm = torch.randperm(len(self), generator=g)
        held, train = perm[:n_heldout], perm[n_heldout:]
        return (
            TensorData(self.x[train], self.y[train], self.num_classes, f"{self.name}[train]", self.stats),
            TensorData(self.x[held], self.y[held], self.num_classes, f"{self.name}[heldout]", self.stats),
        )


def normalize(
    x: np.ndarray, stats: tuple[tuple[float, ...], tuple[float, ...]] | None
) -> tuple[torch.Tensor, tuple[tuple[float, ...], tuple[float, ...]]]:
    """uint8 -> x/255; then (x - mean)/std per channel (axis 1 of 4-D data, one scalar for (N, D)).

    With `stats` None the mean/std are those of `x` itself, accumulated in float64;
    a zero std is replaced by 1 (constant channels).
    """
    t = torch.from_numpy(np.array(x, dtype=np.float32, copy=True))
    if x.dtype == np.uint8:
        t.div_(255.0)
    per_channel = t.dim() == 4
    if stats is None:
        if per_channel:
            d = t.transpose(0, 1).reshape(t.shape[1], -1).double()
            mean, std = d.mean(1).tolist(), d.std(1, correction=0).tolist()
        else:
            d = t.double()
            mean, std = [float(d.mean())], [float(d.std(correction=0))]
        std = [s if s > 1e-12 and math.isfinite(s) else 1.0 for s in std]
        stats = (tuple(mean), tuple(std))
    mean_t = torch.tensor(stats[0], dtype=torch.float32)
    std_t = torch.tensor(stats[1], dtype=torch.float32)
    if per_channel:
        if len(stats[0]) != t.shape[1]:
            raise DataError(f"normalization has {len(stats[0])} channels, data has {t.shape[1]}")
        mean_t, std_t = mean_t.view(1, -1, 1, 1), std_t.view(1, -1, 1, 1)
    t.sub_(mean_t).div_(std_t)
    return t, stats


def _synthetic(ref: DataRef) -> TensorData:
    shape = tuple(ref.shape or (3, 32, 32))
    n = ref.limit if ref.limit is not None else 8 * ref.batch_size
    numel = n * math.prod(shape)
    if numel > MAX_SYNTHETIC_ELEMENTS:
        raise DataError(
            f"synthetic data of {n} x {list(shape)} is {numel} values (> {MAX_SYNTHETIC_ELEMENTS}); lower limit, batch_size or shape"
        )
    g = torch.Generator().manual_seed(ref.seed)
    x = torch.randn((n, *shape), generator=g, dtype=torch.float32)
    assert ref.num_classes is not None
    y = torch.randint(0, ref.num_classes, (n,), generator=g, dtype=torch.int64)
    c = shape[0] if len(shape) == 3 else 1
    return TensorData(x, y, ref.num_classes, "synthetic", ((0.0,) * c, (1.0,) * c))


def _read(ref: DataRef, root: str, allowed_roots: list[str] | None, caps: DataCaps) -> RawData:
    def guard(path: str) -> str:
        return confine(path, allowed_roots)

    if ref.kind in ("cifar10", "cifar100"):
        return readers.read_cifar(root, ref.kind, ref.split, ref.limit, ref.seed, guard, caps)
    if ref.kind in ("mnist", "fashion-mnist"):
        return readers.read_mnist(root, ref.kind, ref.split, ref.limit, ref.seed, guard, caps)
    if ref.kind == "imagefolder":
        return readers.read_imagefolder(root, ref.split, ref.limit, ref.seed, ref.shape, guard, caps)
    if ref.kind == "tensors":
        return readers.read_tensors(root, ref.split, ref.limit, ref.seed, ref.num_classes, guard, caps)
    raise DataError(f"unknown data kind {ref.kind!r}")  # pragma: no cover - DataRef restricts kinds


def load(ref: DataRef | Mapping[str, Any], *, allowed_roots: list[str] | None = None, caps: DataCaps | None = None) -> TensorData:
    """Read and normalize the samples a data reference names; raise DataError with what to fix.

    `caps` bound what may be decoded (default :class:`DataCaps()`: 1 GiB as float32, 10^6 samples).
    """
    ref = parse_ref(ref)
    caps = caps or DataCaps()
    if ref.kind == "synthetic":
        data = _synthetic(ref)
    else:
        root = resolve_root(ref, allowed_roots)
        assert root is not None
        raw = _read(ref, root, allowed_roots, caps)
        if len(raw.x) == 0:
            raise DataError(f"{ref.root}: no samples in the {ref.split} split")
        fixed = readers.NUM_CLASSES.get(ref.kind)
        if fixed is not None and ref.num_classes is not None and ref.num_classes != fixed:
            raise DataError(f"{ref.kind} has {fixed} classes; drop num_classes or set it to {fixed}")
        if ref.kind == "imagefolder" and ref.num_classes is not None and ref.num_classes != raw.num_classes:
            raise DataError(f"{ref.root}: {raw.num_classes} class directories but num_classes is {ref.num_classes}")
        x, stats = normalize(raw.x, STATS.get(ref.kind))
        data = TensorData(x, torch.from_numpy(np.array(raw.y, np.int64)), raw.num_classes, f"{ref.kind}/{ref.split}", stats)
        if ref.shape is not None and ref.kind != "imagefolder" and tuple(ref.shape) != data.input_shape:
            raise DataError(f"{ref.root}: samples have shape {list(data.input_shape)}, the reference asks for {list(ref.shape)}")
    if ref.batch_size > len(data):
        raise DataError(f"{data.name}: batch_size {ref.batch_size} > {len(data)} samples; lower batch_size or raise limit")
    return data
