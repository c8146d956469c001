"""initscore.data.load: every kind from real files written here, real shared data when present, errors.

Files are written in their genuine on-disk formats (IDX bytes, python-pickle CIFAR
batches, npz, safetensors, PNG/JPEG), never mocked.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from initscore import data
from initscore.data import readers
from initscore.errors import DataError

CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465])
CIFAR10_STD = np.array([0.2470, 0.2435, 0.2616])


@pytest.fixture(autouse=True)
def _fresh_caches():
    data.clear_caches()
    yield
    data.clear_caches()


def expected_norm(x_nchw_u8: np.ndarray, mean, std) -> np.ndarray:
    """Float64 reference of (x/255 - mean)/std per channel."""
    m = np.asarray(mean, np.float64).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float64).reshape(1, -1, 1, 1)
    return (x_nchw_u8.astype(np.float64) / 255.0 - m) / s


# ------------------------------------------------------------------ file writers
def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    blob = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(blob) if gz else blob)


def write_cifar_batch(path: Path, x_nchw: np.ndarray, labels: list[int], label_key: bytes = b"labels", protocol: int = 2):
    batch = {b"data": x_nchw.reshape(len(x_nchw), -1), label_key: labels, b"batch_label": b"test"}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=protocol)


def write_jpeg_npz(path: Path, images_nhwc: np.ndarray, y: np.ndarray) -> None:
    blobs = []
    for im in images_nhwc:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=95)
        blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    np.savez(path, jpeg=np.concatenate(blobs), offsets=offsets, y=y.astype(np.int64), classes=np.array([f"c{i}" for i in range(10)]))


def rand_u8(rng, *shape) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


# ------------------------------------------------------------------ synthetic
def test_synthetic_is_seeded_gaussian_with_uniform_labels() -> None:
    a = data.load({"kind": "synthetic", "shape": [3, 8, 8], "num_classes": 4, "batch_size": 16, "seed": 3})
    b = data.load({"kind": "synthetic", "shape": [3, 8, 8], "num_classes": 4, "batch_size": 16, "seed": 3})
    c = data.load({"kind": "synthetic", "shape": [3, 8, 8], "num_classes": 4, "batch_size": 16, "seed": 4})
    assert len(a) == 8 * 16 and a.input_shape == (3, 8, 8) and a.num_classes == 4
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    assert abs(float(a.x.double().mean())) < 0.05 and abs(float(a.x.double().std()) - 1) < 0.05
    assert set(a.y.tolist()) == {0, 1, 2, 3}
    assert len(data.load({"kind": "synthetic", "shape": [5], "limit": 10, "batch_size": 10})) == 10


def test_synthetic_too_large_is_data_error() -> None:
    with pytest.raises(DataError, match="lower limit"):
        data.load({"kind": "synthetic", "shape": [3, 4096, 4096], "batch_size": 64})


# ------------------------------------------------------------------ CIFAR pickle batches
@pytest.fixture
def cifar10_batches(tmp_path: Path):
    rng = np.random.default_rng(0)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    xs, ys = [], []
    for i in range(1, 6):
        x, y = rand_u8(rng, 4, 3, 32, 32), rng.integers(0, 10, 4).tolist()
        write_cifar_batch(d / f"data_batch_{i}", x, y)
        xs.append(x)
        ys += y
    xt, yt = rand_u8(rng, 3, 3, 32, 32), [9, 0, 5]
    write_cifar_batch(d / "test_batch", xt, yt)
    return tmp_path, np.concatenate(xs), np.array(ys), xt, np.array(yt)


def test_cifar10_pickle_batches_train_and_test(cifar10_batches) -> None:
    parent, x, y, xt, yt = cifar10_batches
    for root in (parent, parent / "cifar-10-batches-py"):  # the parent or the batches directory
        tr = data.load({"kind": "cifar10", "root": str(root), "batch_size": 4})
        assert tr.x.shape == (20, 3, 32, 32) and tr.num_classes == 10 and tr.name == "cifar10/train"
        np.testing.assert_allclose(tr.x.numpy(), expected_norm(x, CIFAR10_MEAN, CIFAR10_STD), rtol=0, atol=1e-5)
        assert tr.y.tolist() == y.tolist()
    te = data.load({"kind": "cifar10", "root": str(parent), "split": "test", "batch_size": 3})
    np.testing.assert_allclose(te.x.numpy(), expected_norm(xt, CIFAR10_MEAN, CIFAR10_STD), atol=1e-5)
    assert te.y.tolist() == yt.tolist()


def test_cifar10_pickle_protocol4_and_limit_is_seeded_subset(cifar10_batches) -> None:
    parent, x, y, *_ = cifar10_batches
    root = parent / "cifar-10-batches-py"
    write_cifar_batch(root / "data_batch_1", x[:4], y[:4].tolist(), protocol=4)
    a = data.load({"kind": "cifar10", "root": str(root), "limit": 7, "seed": 1, "batch_size": 2})
    b = data.load({"kind": "cifar10", "root": str(root), "limit": 7, "seed": 1, "batch_size": 2})
    c = data.load({"kind": "cifar10", "root": str(root), "limit": 7, "seed": 2, "batch_size": 2})
    assert len(a) == 7 and torch.equal(a.x, b.x)
    idx = readers.select(20, 7, 1)
    np.testing.assert_allclose(a.x.numpy(), expected_norm(x[idx], CIFAR10_MEAN, CIFAR10_STD), atol=1e-5)
    assert not torch.equal(a.x, c.x)


def test_cifar100_pickle_uses_fine_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    x = rand_u8(rng, 5, 3, 32, 32)
    write_cifar_batch(d / "train", x, [0, 99, 50, 3, 7], label_key=b"fine_labels")
    write_cifar_batch(d / "test", x[:2], [1, 2], label_key=b"fine_labels")
    tr = data.load({"kind": "cifar100", "root": str(tmp_path), "batch_size": 5})
    assert tr.num_classes == 100 and tr.y.tolist() == [0, 99, 50, 3, 7]
    mean, std = readers.CIFAR100_MEAN, readers.CIFAR100_STD
    np.testing.assert_allclose(tr.x.numpy(), expected_norm(x, mean, std), atol=1e-5)


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    marker = tmp_path / "PWNED"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / name, "wb") as f:
            pickle.dump({b"data": _Evil(str(marker)), b"labels": [0]}, f, protocol=2)
    with pytest.raises(DataError, match="refusing to unpickle"):
        data.load({"kind": "cifar10", "root": str(d), "split": "test"})
    assert not marker.exists()


def test_pickle_batch_with_wrong_array_is_data_error(tmp_path: Path) -> None:
    d = tmp_path / "b"
    d.mkdir()
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(DataError, match="uint8 array of shape"):
        data.load({"kind": "cifar10", "root": str(d), "split": "test", "batch_size": 1})
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, f, protocol=2)
    with pytest.raises(DataError, match="label out of range"):
        data.load({"kind": "cifar10", "root": str(d), "split": "test", "batch_size": 1})


# ------------------------------------------------------------------ CIFAR npz (arrays and JPEG bytes)
def test_cifar_npz_nhwc_and_nchw_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = rand_u8(rng, 6, 32, 32, 3)
    y = np.array([0, 1, 2, 3, 4, 9])
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "nchw.npz", images=x.transpose(0, 3, 1, 2), labels=y)
    a = data.load({"kind": "cifar10", "root": str(tmp_path), "batch_size": 6})  # directory: train.npz
    b = data.load({"kind": "cifar10", "root": str(tmp_path / "nchw.npz"), "batch_size": 6})
    assert torch.equal(a.x, b.x) and a.y.tolist() == y.tolist()
    np.testing.assert_allclose(a.x.numpy(), expected_norm(x.transpose(0, 3, 1, 2), CIFAR10_MEAN, CIFAR10_STD), atol=1e-5)


def test_cifar_npz_wrong_shape_and_dtype(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((2, 28, 28, 3), np.uint8), y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match="3x32x32"):
        data.load({"kind": "cifar10", "root": str(tmp_path / "a.npz"), "batch_size": 1})
    np.savez(tmp_path / "b.npz", x=np.zeros((2, 32, 32, 3), np.float32), y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match="uint8"):
        data.load({"kind": "cifar10", "root": str(tmp_path / "b.npz"), "batch_size": 1})
    np.savez(tmp_path / "c.npz", x=np.zeros((2, 32, 32, 3), np.uint8), y=np.zeros(3, np.int64))
    with pytest.raises(DataError, match="2 images but 3 labels"):
        data.load({"kind": "cifar10", "root": str(tmp_path / "c.npz"), "batch_size": 1})
    np.savez(tmp_path / "d.npz", pixels=np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="expected arrays 'x' and 'y'"):
        data.load({"kind": "cifar10", "root": str(tmp_path / "d.npz"), "batch_size": 1})
    np.savez(tmp_path / "e.npz", x=np.array([object()] * 2), y=np.zeros(2))
    with pytest.raises(DataError, match="without pickle"):
        data.load({"kind": "cifar10", "root": str(tmp_path / "e.npz"), "batch_size": 1})


def test_jpeg_npz_decodes_only_the_selected_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rand_u8(rng, 30, 32, 32, 3)
    y = np.repeat(np.arange(10), 3)  # sorted by class, like the shared copy
    write_jpeg_npz(tmp_path / "cifar10_test_jpegbytes.npz", x, y)
    full = data.load({"kind": "cifar10", "root": str(tmp_path), "split": "test", "batch_size": 4})
    z = np.load(tmp_path / "cifar10_test_jpegbytes.npz")
    ref = np.stack(
        [np.asarray(Image.open(io.BytesIO(z["jpeg"][z["offsets"][i] : z["offsets"][i + 1]].tobytes())).convert("RGB")) for i in range(30)]
    )
    np.testing.assert_allclose(full.x.numpy(), expected_norm(ref.transpose(0, 3, 1, 2), CIFAR10_MEAN, CIFAR10_STD), atol=1e-5)
    assert full.y.tolist() == y.tolist()
    sub = data.load({"kind": "cifar10", "root": str(tmp_path), "split": "test", "limit": 12, "seed": 5, "batch_size": 4})
    idx = readers.select(30, 12, 5)
    assert torch.equal(sub.x, full.x[torch.from_numpy(idx)]) and sub.y.tolist() == y[idx].tolist()
    assert len(set(sub.y.tolist())) > 3  # a random subset, not the first 12 (= 4 classes)
    # the cache held the decoded subset (12 images), keyed by the selected indices
    cached = [v for k, v in readers._DECODED_CACHE.items.items()]
    assert sorted(len(v) for v in cached) == [12, 30]


# ------------------------------------------------------------------ IDX (MNIST / Fashion-MNIST)
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("kind", ["mnist", "fashion-mnist"])
def test_idx_files(tmp_path: Path, gz: bool, kind: str) -> None:
    rng = np.random.default_rng(4)
    sfx = ".gz" if gz else ""
    x, y = rand_u8(rng, 7, 28, 28), np.array([0, 1, 2, 3, 9, 8, 7], np.uint8)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", x, gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", y, gz)
    write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", x[:5], gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", y[:5], gz)
    te = data.load({"kind": kind, "root": str(tmp_path), "split": "test", "batch_size": 7})
    mean, std = readers.STATS[kind]
    assert te.x.shape == (7, 1, 28, 28) and te.y.tolist() == y.tolist()
    np.testing.assert_allclose(te.x.numpy(), expected_norm(x[:, None], mean, std), atol=1e-5)
    assert len(data.load({"kind": kind, "root": str(tmp_path), "batch_size": 5})) == 5


def test_idx_errors(tmp_path: Path) -> None:
    x = np.zeros((3, 4, 4), np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x, False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1], np.uint8), False)
    ref = {"kind": "mnist", "root": str(tmp_path), "split": "test", "batch_size": 1}
    with pytest.raises(DataError, match="2 labels for 3 images"):
        data.load(ref)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 10], np.uint8), False)
    with pytest.raises(DataError, match="label out of range"):
        data.load(ref)
    blob = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(blob[:-5])
    with pytest.raises(DataError, match="need 48 bytes"):
        data.load(ref)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x01\x02" + blob[2:])
    with pytest.raises(DataError, match="bad magic"):
        data.load(ref)
    with pytest.raises(DataError, match="no mnist train files"):
        data.load({**ref, "split": "train"})


# ------------------------------------------------------------------ imagefolder
def _write_folder(root: Path, sizes=((8, 8),), n_per_class: int = 3) -> np.ndarray:
    rng = np.random.default_rng(5)
    images = []
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            h, w = sizes[i % len(sizes)]
            im = rand_u8(rng, h, w, 3)
            Image.fromarray(im).save(root / c / f"{i}.png")
            images.append(im)
    return np.stack(images) if len(sizes) == 1 else np.array(images, dtype=object)


def test_imagefolder_classes_and_per_channel_stats(tmp_path: Path) -> None:
    imgs = _write_folder(tmp_path / "train")
    d = data.load({"kind": "imagefolder", "root": str(tmp_path), "batch_size": 6})  # root/<split>/<class>
    assert d.num_classes == 2 and d.y.tolist() == [0, 0, 0, 1, 1, 1] and d.input_shape == (3, 8, 8)
    x = imgs.transpose(0, 3, 1, 2).astype(np.float64) / 255
    m, s = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
    np.testing.assert_allclose(d.x.numpy(), (x - m.reshape(1, -1, 1, 1)) / s.reshape(1, -1, 1, 1), atol=1e-5)
    ch = d.x.double().transpose(0, 1).reshape(3, -1)
    assert torch.allclose(ch.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(ch.std(1, correction=0), torch.ones(3, dtype=torch.float64), atol=1e-5)
    np.testing.assert_allclose(d.stats[0], m, rtol=1e-6)


def test_imagefolder_mixed_sizes_need_shape(tmp_path: Path) -> None:
    _write_folder(tmp_path, sizes=((8, 8), (12, 10)))
    with pytest.raises(DataError, match="pass 'shape'"):
        data.load({"kind": "imagefolder", "root": str(tmp_path), "batch_size": 2})
    d = data.load({"kind": "imagefolder", "root": str(tmp_path), "shape": [1, 6, 6], "batch_size": 2})
    assert d.input_shape == (1, 6, 6) and len(d) == 6


def test_imagefolder_empty_and_num_classes_mismatch(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="no images"):
        data.load({"kind": "imagefolder", "root": str(tmp_path), "batch_size": 1})
    _write_folder(tmp_path / "x")
    with pytest.raises(DataError, match="num_classes is 5"):
        data.load({"kind": "imagefolder", "root": str(tmp_path / "x"), "num_classes": 5, "batch_size": 1})


# ------------------------------------------------------------------ tensors
def test_tensors_npz_and_safetensors(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(6)
    x = rng.normal(3.0, 2.0, size=(10, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 1], np.int64)
    np.savez(tmp_path / "t.npz", x=x, y=y)
    save_file({"x": x, "y": y}, str(tmp_path / "t.safetensors"))
    a = data.load({"kind": "tensors", "root": str(tmp_path / "t.npz"), "batch_size": 4})
    b = data.load({"kind": "tensors", "root": str(tmp_path / "t.safetensors"), "batch_size": 4})
    assert torch.equal(a.x, b.x) and a.num_classes == 3 and a.input_shape == (5,)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(a.x.numpy(), (x64 - x64.mean()) / x64.std(), atol=1e-5)
    c = data.load({"kind": "tensors", "root": str(tmp_path / "t.npz"), "num_classes": 7, "batch_size": 4})
    assert c.num_classes == 7
    with pytest.raises(DataError, match="label out of range"):
        data.load({"kind": "tensors", "root": str(tmp_path / "t.npz"), "num_classes": 2, "batch_size": 4})
    # a directory holds <split>.safetensors
    save_file({"x": rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), "y": np.zeros(4, np.int64)}, str(tmp_path / "test.safetensors"))
    d = data.load({"kind": "tensors", "root": str(tmp_path), "split": "test", "batch_size": 2})
    assert d.input_shape == (3, 8, 8)  # NHWC uint8 -> NCHW


@pytest.mark.parametrize(
    "x,y,fragment",
    [
        (np.zeros((3, 4), np.float32), np.array([0, -1, 1]), "label out of range"),
        (np.zeros((3, 4), np.float32), np.array([0, 1]), "3 samples in x but 2 labels"),
        (np.full((2, 4), np.nan, np.float32), np.array([0, 1]), "NaN"),
        (np.zeros((3,), np.float32), np.array([0, 1, 1]), "feature axis"),
        (np.zeros((3, 4), np.int32), np.array([0, 1, 1]), "uint8 or floating"),
        (np.zeros((3, 4), np.float32), np.array([0.5, 1, 1]), "integers"),
        (np.zeros((0, 4), np.float32), np.zeros(0, np.int64), "no samples"),
    ],
)
def test_tensors_errors(tmp_path: Path, x, y, fragment: str) -> None:
    np.savez(tmp_path / "t.npz", x=x, y=y)
    with pytest.raises(DataError, match=fragment):
        data.load({"kind": "tensors", "root": str(tmp_path / "t.npz"), "batch_size": 1})


# ------------------------------------------------------------------ errors: paths, roots, refs
def test_missing_path_and_bad_ref() -> None:
    with pytest.raises(DataError, match="does not exist"):
        data.load({"kind": "cifar10", "root": "/nonexistent/cifar"})
    with pytest.raises(DataError, match="kind"):
        data.load({"kind": "svhn", "root": "/tmp"})
    with pytest.raises(DataError, match="needs a 'root'"):
        data.load({"kind": "mnist"})
    with pytest.raises(DataError, match="batch_size"):
        data.load({"kind": "synthetic", "batch_size": 0})


@pytest.fixture
def roots(tmp_path: Path):
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    for d in (allowed, outside):
        d.mkdir()
        np.savez(d / "t.npz", x=np.zeros((4, 3), np.float32), y=np.array([0, 1, 0, 1]))
    return allowed, outside


def test_allowed_roots_confine_paths(roots) -> None:
    allowed, outside = roots
    ok = data.load({"kind": "tensors", "root": str(allowed / "t.npz"), "batch_size": 2}, allowed_roots=[str(allowed)])
    assert len(ok) == 4
    with pytest.raises(DataError, match="outside the allowed dataset roots"):
        data.load({"kind": "tensors", "root": str(outside / "t.npz"), "batch_size": 2}, allowed_roots=[str(allowed)])
    with pytest.raises(DataError, match="outside the allowed"):  # '..' traversal
        data.load({"kind": "tensors", "root": f"{allowed}/../outside/t.npz", "batch_size": 2}, allowed_roots=[str(allowed)])
    with pytest.raises(DataError, match="outside the allowed"):  # a sibling whose name starts like the root
        sib = allowed.parent / "allowed2"
        sib.mkdir()
        data.validate_ref({"kind": "tensors", "root": str(sib)}, [str(allowed)])
    with pytest.raises(DataError, match="outside the allowed"):
        data.validate_ref({"kind": "tensors", "root": str(allowed)}, [])


def test_symlinks_cannot_escape(roots) -> None:
    allowed, outside = roots
    (allowed / "link.npz").symlink_to(outside / "t.npz")
    (allowed / "linkdir").symlink_to(outside, target_is_directory=True)
    for root in (allowed / "link.npz", allowed / "linkdir", allowed / "linkdir" / "t.npz"):
        with pytest.raises(DataError, match="outside the allowed"):
            data.load({"kind": "tensors", "root": str(root), "batch_size": 2}, allowed_roots=[str(allowed)])
    # an allowed root that is itself a symlink is resolved too
    alias = allowed.parent / "alias"
    alias.symlink_to(allowed, target_is_directory=True)
    assert len(data.load({"kind": "tensors", "root": str(allowed / "t.npz"), "batch_size": 2}, allowed_roots=[str(alias)])) == 4


def test_symlinked_file_inside_an_allowed_folder_is_refused(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    _write_folder(allowed)
    outside.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(outside / "secret.png")
    (allowed / "cat" / "9.png").symlink_to(outside / "secret.png")
    with pytest.raises(DataError, match="outside the allowed"):
        data.load({"kind": "imagefolder", "root": str(allowed), "batch_size": 2}, allowed_roots=[str(allowed)])
    assert len(data.load({"kind": "imagefolder", "root": str(allowed), "batch_size": 2})) == 7


def test_validate_ref_is_torch_free(roots) -> None:
    allowed, outside = roots
    code = (
        "import sys\nfrom initscore.dataref import validate_ref\nfrom initscore.errors import DataError\n"
        f"validate_ref({{'kind': 'tensors', 'root': {str(allowed)!r}}}, [{str(allowed)!r}])\n"
        "try:\n"
        f"    validate_ref({{'kind': 'tensors', 'root': {str(outside)!r}}}, [{str(allowed)!r}])\n"
        "except DataError:\n    pass\nelse:\n    raise SystemExit('not refused')\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules)\nprint('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_batch_size_larger_than_data(roots) -> None:
    allowed, _ = roots
    with pytest.raises(DataError, match="batch_size 5 > 4 samples"):
        data.load({"kind": "tensors", "root": str(allowed / "t.npz"), "batch_size": 5})


def test_shape_mismatch_is_data_error(roots) -> None:
    allowed, _ = roots
    with pytest.raises(DataError, match="asks for"):
        data.load({"kind": "tensors", "root": str(allowed / "t.npz"), "batch_size": 2, "shape": [4]})


# ------------------------------------------------------------------ TensorData sampling
def test_batch_batches_split() -> None:
    d = data.load({"kind": "synthetic", "shape": [4], "limit": 20, "batch_size": 5, "seed": 0})
    rows = {tuple(r.tolist()): i for i, r in enumerate(d.x)}
    x1, y1 = d.batch(8, seed=1)
    x2, _ = d.batch(8, seed=1)
    assert torch.equal(x1, x2) and len({tuple(r.tolist()) for r in x1}) == 8  # seeded, without replacement
    assert not torch.equal(x1, d.batch(8, seed=2)[0])
    idx = [rows[tuple(r.tolist())] for r in x1]
    assert torch.equal(d.y[idx], y1)
    it = d.batches(6, seed=0)
    epoch = [next(it) for _ in range(3)]  # 3 full batches of 6 per epoch of 20 (tail of 2 dropped)
    seen = [rows[tuple(r.tolist())] for xb, _ in epoch for r in xb]
    assert len(seen) == 18 and len(set(seen)) == 18
    train, held = d.split(4, seed=0)
    assert len(train) == 16 and len(held) == 4
    tr_rows = {tuple(r.tolist()) for r in train.x}
    assert not tr_rows & {tuple(r.tolist()) for r in held.x}
    with pytest.raises(DataError):
        d.split(20)
    with pytest.raises(DataError, match="batch_size 21 > 20"):
        d.batch(21)


def test_tensor_data_validates_labels() -> None:
    with pytest.raises(DataError, match="label out of range"):
        data.TensorData(torch.zeros(2, 3), torch.tensor([0, 3]), 3, "t")
    with pytest.raises(DataError, match="no samples"):
        data.TensorData(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64), 3, "t")


# ------------------------------------------------------------------ real data (skipped when absent)
def test_real_cifar10_jpeg_sample() -> None:
    root = data.default_cifar10_root()
    if root is None or not os.path.isdir(root):
        pytest.skip("../shared/data/cifar10_jpeg not present")
    d = data.load({"kind": "cifar10", "root": root, "split": "test", "limit": 500, "seed": 0, "batch_size": 64})
    assert d.x.shape == (500, 3, 32, 32) and d.num_classes == 10
    assert len(set(d.y.tolist())) == 10  # the seeded subset spans every class of the class-sorted file
    raw_mean = (d.x.double().mean((0, 2, 3)).numpy() * CIFAR10_STD) + CIFAR10_MEAN
    np.testing.assert_allclose(raw_mean, CIFAR10_MEAN, atol=0.03)


def test_real_mnist_test_set() -> None:
    root = data.default_mnist_root()
    if root is None:
        pytest.skip("../shared/data/mnist_test not present")
    d = data.load({"kind": "mnist", "root": root, "split": "test", "batch_size": 64})
    assert d.x.shape == (10000, 1, 28, 28) and d.y.bincount().tolist()[:2] == [980, 1135]
    assert abs(float(d.x.double().mean())) < 0.02 and abs(float(d.x.double().std()) - 1) < 0.02


def test_real_fashion_mnist_from_debian_package() -> None:
    root = data.default_fashion_mnist_root()
    if root is None:
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    d = data.load({"kind": "fashion-mnist", "root": root, "split": "test", "limit": 2000, "batch_size": 64})
    assert d.x.shape == (2000, 1, 28, 28) and len(set(d.y.tolist())) == 10
    assert abs(float(d.x.double().mean())) < 0.05


def test_decoded_cache_is_bounded_in_bytes() -> None:
    lru = readers._LRU(8, 100)
    for i in range(3):
        lru.get(i, lambda: np.zeros(60, np.uint8))
    assert list(lru.items) == [2]  # 3 x 60 bytes > 100: only the newest survives
    assert not lru.items[2].flags.writeable


def _sbs(b: bytes) -> bytes:  # pickle SHORT_BINSTRING: a Python 2 `str`
    return b"U" + bytes([len(b)]) + b


def py2_cifar_batch(x: np.ndarray, labels: list[int]) -> bytes:
    """Opcode by opcode, a CIFAR batch as Python 2's cPickle (protocol 2) wrote the official
    files: str keys and array bytes as SHORT_BINSTRING/BINSTRING, `numpy.core.multiarray` globals."""
    n = x.shape[0]
    out = b"\x80\x02}(" + _sbs(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85" + _sbs(b"b") + b"\x87R"
    out += b"(K\x01" + b"M" + struct.pack("<H", n) + b"M" + struct.pack("<H", 3072) + b"\x86"
    out += b"cnumpy\ndtype\n" + _sbs(b"u1") + b"K\x00K\x01\x87R"
    out += b"(K\x03" + _sbs(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += b"\x89" + b"T" + struct.pack("<I", x.nbytes) + x.tobytes() + b"tb"
    out += _sbs(b"labels") + b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    out += _sbs(b"batch_label") + _sbs(b"testing batch 1 of 1")
    return out + b"u."


def test_python2_pickled_cifar_batch(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    x = rand_u8(rng, 3, 3, 32, 32)
    (tmp_path / "test_batch").write_bytes(py2_cifar_batch(x.reshape(3, -1), [3, 7, 0]))
    d = data.load({"kind": "cifar10", "root": str(tmp_path), "split": "test", "batch_size": 3})
    assert d.y.tolist() == [3, 7, 0]
    np.testing.assert_allclose(d.x.numpy(), expected_norm(x, CIFAR10_MEAN, CIFAR10_STD), atol=1e-5)
