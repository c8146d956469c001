"""Numpy/Pillow readers of every data kind (no torch). Each returns a :class:`RawData`.

Readers return images as uint8 (N, C, H, W) (or float32 for `tensors`) plus int64
labels; normalization to float32 happens in :mod:`initscore.data`. Every file opened
is confined to the allowed roots (``guard``), so a symlink inside an allowed
directory cannot leak a file from outside it.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from initscore.errors import DataError

Guard = Callable[[str], str]  # path -> real path, raises DataError outside the allowed roots

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)

STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
    "mnist": (MNIST_MEAN, MNIST_STD),
    "fashion-mnist": (FASHION_MEAN, FASHION_STD),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "mnist": 10, "fashion-mnist": 10}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
MAX_IDX_BYTES = 1 << 31


@dataclass(frozen=True)
class RawData:
    """Images (uint8 or float32, (N, C, H, W) or (N, D)) and int64 labels before normalization."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    source: str  # which file format was read, for messages and names


# ------------------------------------------------------------------ caps on decoded data
@dataclass(frozen=True)
class DataCaps:
    """Caps on what one data reference may decode, checked before allocation wherever the format allows.

    max_bytes: decoded bytes, counted as samples x values per sample x 4 (the float32 the
    engine holds) and, for .npz members, also as the member's own size; max_samples:
    samples decoded. ``*_setting`` name the knob in error messages (the service's
    environment variables by default).
    """

    max_bytes: int = 1 << 30
    max_samples: int = 1_000_000
    bytes_setting: str = "INITSCORE_MAX_DATA_BYTES"
    samples_setting: str = "INITSCORE_MAX_DATA_SAMPLES"

    def check(self, where: str, n: int, values_per_sample: int, stored_bytes: int | None = None) -> None:
        """Raise DataError if `n` samples of `values_per_sample` values (float32) break a cap."""
        if n > self.max_samples:
            raise DataError(f"{where}: {n} samples to decode, over the cap of {self.max_samples} ({self.samples_setting}); "
                            "use a smaller file or ask the operator")
        total = max(n * values_per_sample * 4, stored_bytes or 0)
        if total > self.max_bytes:
            raise DataError(f"{where}: decoded data would take {total / 2**20:.0f} MiB, over the cap of "
                            f"{self.max_bytes / 2**20:.0f} MiB ({self.bytes_setting}); use fewer or smaller samples")

    def check_npz(self, path: str, where: str) -> None:
        """Check every member's header (shape, dtype) against the caps without decompressing anything."""
        members = npz_members(path)
        total = 0
        for name, (shape, dtype) in members.items():
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            total += nbytes
            if len(shape) >= 2:  # samples x features (1-D members are labels, offsets or raw bytes)
                self.check(f"{where} member {name!r}", int(shape[0]), int(np.prod(shape[1:], dtype=np.int64)), nbytes)
            else:
                self.check(f"{where} member {name!r}", 0, 0, nbytes)
        self.check(where, 0, 0, total)


def npz_members(path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of every array in an .npz from its .npy headers alone (nothing is decompressed beyond them)."""
    import zipfile

    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with z.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                    else:
                        raise DataError(f"{path}: member {info.filename} has unsupported .npy version {version}")
                out[info.filename[:-4]] = (tuple(int(d) for d in shape), np.dtype(dtype))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    return out


# ------------------------------------------------------------------ sample selection
def select(n_total: int, limit: int | None, seed: int) -> np.ndarray | None:
    """Indices of a seeded random subset of `limit` samples (sorted), or None for all.

    A random subset (not the first N) because several sources are sorted by class.
    """
    if limit is None or limit >= n_total:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n_total)[:limit])


def _take(a: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    return a if idx is None else a[idx]


# ------------------------------------------------------------------ checks
def check_labels(y: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be a 1-D array, got shape {tuple(y.shape)}")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and y.size and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{where}: labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if y.size:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0:
            raise DataError(f"{where}: label out of range: labels must be class indices >= 0, found a negative label ({lo})")
        if hi >= num_classes:
            raise DataError(
                f"{where}: label out of range: labels span {lo}..{hi} but num_classes is {num_classes}"
            )
    return y


def to_nchw(x: np.ndarray, channels: Sequence[int], where: str) -> np.ndarray:
    """(N,H,W,C) or (N,C,H,W) with C in `channels` -> (N,C,H,W); (N,H,W) -> (N,1,H,W) if 1 is allowed."""
    if x.ndim == 3 and 1 in channels:
        return x[:, None]
    if x.ndim != 4:
        raise DataError(f"{where}: images must be (N,H,W,C) or (N,C,H,W), got shape {tuple(x.shape)}")
    if x.shape[1] in channels and x.shape[3] not in channels:
        return x
    if x.shape[3] in channels:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.shape[1] in channels:
        return x
    raise DataError(f"{where}: images must have {' or '.join(map(str, channels))} channels, got shape {tuple(x.shape)}")


# ------------------------------------------------------------------ small LRU cache
class _LRU:
    """A thread-safe LRU of at most `size` entries and `max_bytes` of numpy arrays (the newest always kept)."""

    def __init__(self, size: int, max_bytes: int) -> None:
        self.size, self.max_bytes = size, max_bytes
        self.items: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    @staticmethod
    def _nbytes(value) -> int:
        if isinstance(value, np.ndarray):
            return value.nbytes
        if isinstance(value, dict):
            return sum(v.nbytes for v in value.values() if isinstance(v, np.ndarray))
        return 0

    def get(self, key, make):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = make()
        if isinstance(value, np.ndarray):
            value.flags.writeable = False  # shared between loads: never modified in place
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > 1 and (
                len(self.items) > self.size or sum(self._nbytes(v) for v in self.items.values()) > self.max_bytes
            ):
                self.items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


_NPZ_CACHE = _LRU(2, 256 << 20)  # (path, mtime, size) -> arrays of a JPEG-bytes npz
_DECODED_CACHE = _LRU(8, 512 << 20)  # (path, mtime, size, indices digest) -> decoded uint8 images


def clear_caches() -> None:
    _NPZ_CACHE.clear()
    _DECODED_CACHE.clear()


def _file_key(path: str) -> tuple[str, int, int]:
    st = os.stat(path)
    return (path, st.st_mtime_ns, st.st_size)


# ------------------------------------------------------------------ npz (arrays or JPEG bytes)
def _open_npz(path: str, caps: DataCaps | None = None) -> dict[str, np.ndarray]:
    (caps or DataCaps()).check_npz(path, os.path.basename(path))
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:  # object arrays need pickle: refused
        raise DataError(f"{path}: unreadable npz without pickle ({exc})") from None
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None


def _pick_keys(arrays: dict[str, np.ndarray], where: str) -> tuple[np.ndarray, np.ndarray]:
    for kx, ky in (("x", "y"), ("images", "labels"), ("data", "labels"), ("X", "y")):
        if kx in arrays and ky in arrays:
            return arrays[kx], arrays[ky]
    raise DataError(f"{where}: expected arrays 'x' and 'y' (or 'images' and 'labels'); found {sorted(arrays)}")


def _decode_jpegs(jpeg: np.ndarray, offsets: np.ndarray, idx: np.ndarray, where: str, caps: DataCaps) -> np.ndarray:
    from PIL import Image

    out = None
    for j, i in enumerate(idx):
        a, b = int(offsets[i]), int(offsets[i + 1])
        if not 0 <= a < b <= jpeg.size:
            raise DataError(f"{where}: offsets[{i}]..offsets[{i + 1}] = {a}..{b} outside the JPEG bytes")
        try:
            with Image.open(io.BytesIO(jpeg[a:b].tobytes())) as im:
                caps.check(f"{where}: image {i}", 1, im.width * im.height * 3)  # from the header, before decoding
                if out is None:
                    caps.check(where, len(idx), im.width * im.height * 3)
                arr = np.asarray(im.convert("RGB"))
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{where}: image {i} is not a decodable JPEG ({type(exc).__name__})") from None
        if out is None:
            out = np.empty((len(idx),) + arr.shape, np.uint8)
        if arr.shape != out.shape[1:]:
            raise DataError(f"{where}: image {i} has shape {arr.shape}, expected {out.shape[1:]}")
        out[j] = arr
    assert out is not None
    return out


def read_jpeg_npz(path: str, limit: int | None, seed: int, caps: DataCaps | None = None) -> tuple[np.ndarray, np.ndarray, int | None]:
    """The repo's JPEG-bytes npz (keys jpeg, offsets, y): decode only the selected images."""
    caps = caps or DataCaps()
    key = _file_key(path)
    arrays = _NPZ_CACHE.get(key, lambda: _open_npz(path, caps))
    jpeg, offsets, y = arrays["jpeg"], arrays["offsets"], arrays["y"]
    n = len(offsets) - 1
    if jpeg.dtype != np.uint8 or jpeg.ndim != 1 or offsets.ndim != 1 or n < 0 or len(y) != n:
        raise DataError(f"{path}: JPEG npz needs 1-D uint8 'jpeg', n+1 'offsets' and n labels 'y'")
    idx = select(n, limit, seed)
    full = np.arange(n) if idx is None else idx
    digest = (len(full), hashlib.sha1(full.astype(np.int64).tobytes()).hexdigest())
    images = _DECODED_CACHE.get(key + digest, lambda: _decode_jpegs(jpeg, offsets, full, path, caps))
    n_classes = len(arrays["classes"]) if "classes" in arrays else None
    return images, _take(y, idx), n_classes


def read_array_npz(path: str, limit: int | None, seed: int, caps: DataCaps | None = None) -> tuple[np.ndarray, np.ndarray]:
    arrays = _open_npz(path, caps)
    x, y = _pick_keys(arrays, path)
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
    idx = select(len(x), limit, seed)
    return _take(x, idx), _take(y, idx)


# ------------------------------------------------------------------ CIFAR
_CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _cifar_pickle_files(d: Path, kind: str, split: str) -> list[Path] | None:
    for base in (d, d / _CIFAR_DIRS[kind]):
        if kind == "cifar10":
            names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        else:
            names = [split]
        files = [base / n for n in names]
        if all(f.is_file() for f in files):
            return files
    return None


def read_cifar(root: str, kind: str, split: str, limit: int | None, seed: int, guard: Guard, caps: DataCaps | None = None) -> RawData:
    """CIFAR-10/100 from python batches, an images+labels npz or the JPEG-bytes npz."""
    caps = caps or DataCaps()
    n_classes = NUM_CLASSES[kind]
    p = Path(root)
    if p.is_file():
        files, source = [p], None
    else:
        pickles = _cifar_pickle_files(p, kind, split)
        if pickles is not None:
            files, source = pickles, "pickle"
        else:
            cands = sorted(p.glob(f"{kind}_{split}_jpegbytes.npz")) or sorted(p.glob(f"*{split}*jpegbytes*.npz"))
            cands = cands or sorted(p.glob(f"{split}.npz")) or sorted(p.glob(f"*{split}*.npz"))
            if not cands:
                expected = (
                    "data_batch_1..5/test_batch" if kind == "cifar10" else "train/test"
                ) + f" (python batches), {kind}_{split}_jpegbytes.npz or {split}.npz"
                raise DataError(f"{root}: no {kind} {split} data found; expected {expected}")
            files, source = [cands[0]], None
    where = str(files[0])
    for f in files:
        guard(str(f))
    if source is None and files[0].suffix == ".npz":
        with np.load(guard(str(files[0])), allow_pickle=False) as z:
            is_jpeg = "jpeg" in z.files and "offsets" in z.files
        if is_jpeg:
            x, y, file_classes = read_jpeg_npz(guard(where), limit, seed, caps)
            if file_classes is not None and file_classes != n_classes:
                raise DataError(f"{where}: holds {file_classes} classes, not {kind}")
            source = "jpeg-npz"
        else:
            x, y = read_array_npz(guard(where), limit, seed, caps)
            source = "npz"
    else:
        # a pickle batch is uncompressed: it decodes to at most its file size
        caps.check(where, 0, 0, sum(os.path.getsize(guard(str(f))) for f in files))
        x, y = _read_cifar_pickles([guard(str(f)) for f in files], kind, limit, seed)
        source = "pickle"
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise DataError(f"{where}: {kind} images must be uint8 0..255, got dtype {x.dtype}")
    x = to_nchw(x.reshape(len(x), 3, 32, 32) if x.ndim == 2 and x.shape[1] == 3072 else x, (3,), where)
    if x.shape[1:] != (3, 32, 32):
        raise DataError(f"{where}: {kind} images must be 3x32x32, got {tuple(x.shape[1:])}")
    y = check_labels(y, n_classes, where)
    if len(x) != len(y):
        raise DataError(f"{where}: {len(x)} images but {len(y)} labels")
    return RawData(x, y, n_classes, source)


def _read_cifar_pickles(files: list[str], kind: str, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from initscore.data.safe_pickle import load_batch

    label_key = "labels" if kind == "cifar10" else "fine_labels"
    xs, ys = [], []
    for f in files:
        d = load_batch(f)
        if "data" not in d or label_key not in d:
            raise DataError(f"{f}: a {kind} batch needs 'data' and '{label_key}', found {sorted(d)}")
        data, labels = d["data"], d[label_key]
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            shape = getattr(data, "shape", None)
            raise DataError(f"{f}: 'data' must be a uint8 array of shape (N, 3072), got {type(data).__name__} {shape}")
        if not isinstance(labels, (list, np.ndarray)) or not all(isinstance(v, (int, np.integer)) for v in labels):
            raise DataError(f"{f}: '{label_key}' must be a list of integers")
        xs.append(data)
        ys.append(np.asarray(labels, dtype=np.int64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(x) != len(y):
        raise DataError(f"{files[0]}: {len(x)} images but {len(y)} labels")
    idx = select(len(x), limit, seed)
    return _take(x, idx).reshape(-1, 3, 32, 32), _take(y, idx)


# ------------------------------------------------------------------ IDX (MNIST, Fashion-MNIST)
_IDX_TYPES = {0x08: np.uint8}


def read_idx(path: str, caps: DataCaps | None = None) -> np.ndarray:
    """Parse an IDX file (optionally gzip-compressed): magic 0 0 type ndim, big-endian dims, data.

    The dims in the header are checked against `caps` before the data is read (a small
    .gz can inflate to gigabytes).
    """
    caps = caps or DataCaps()
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        with (gzip.GzipFile(fileobj=f) if head == b"\x1f\x8b" else f) as g:
            magic = g.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
                raise DataError(f"{path}: not an IDX file (bad magic number)")
            dtype, ndim = _IDX_TYPES.get(magic[2]), magic[3]
            if dtype is None:
                raise DataError(f"{path}: IDX element type 0x{magic[2]:02x} unsupported (expected unsigned byte 0x08)")
            raw_dims = g.read(4 * ndim)
            if ndim < 1 or len(raw_dims) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header")
            dims = tuple(int(d) for d in np.frombuffer(raw_dims, ">u4", count=ndim))
            n = int(np.prod(dims, dtype=np.int64))
            if n > MAX_IDX_BYTES:
                raise DataError(f"{path}: larger than {MAX_IDX_BYTES} bytes")
            per = int(np.prod(dims[1:], dtype=np.int64)) if ndim > 1 else 1
            caps.check(os.path.basename(path), dims[0], per, n)
            blob = g.read(n + 1)
    if len(blob) != n:
        raise DataError(f"{path}: IDX dims {dims} need {n} bytes of data, file has {len(blob)}")
    return np.frombuffer(blob, dtype, count=n).reshape(dims)


def _find_idx(root: Path, prefix: str, what: str, ndim_tag: str) -> Path | None:
    for base in (root, root / "raw", root / "MNIST" / "raw", root / "FashionMNIST" / "raw"):
        if base.is_dir():
            found = sorted(base.glob(f"{prefix}-{what}*{ndim_tag}*"))
            if found:
                return found[0]
    return None


def read_mnist(root: str, kind: str, split: str, limit: int | None, seed: int, guard: Guard, caps: DataCaps | None = None) -> RawData:
    prefix = "train" if split == "train" else "t10k"
    p = Path(root)
    if not p.is_dir():
        raise DataError(f"{root}: {kind} root must be a directory holding {prefix}-images-idx3-ubyte[.gz]")
    fi, fl = _find_idx(p, prefix, "images", "idx3"), _find_idx(p, prefix, "labels", "idx1")
    if fi is None or fl is None:
        raise DataError(
            f"{root}: no {kind} {split} files; expected {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz]"
        )
    x, y = read_idx(guard(str(fi)), caps), read_idx(guard(str(fl)), caps)
    if x.ndim != 3:
        raise DataError(f"{fi}: images must be an IDX array of 3 dims (N, H, W), got {x.ndim}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{fl}: {len(y)} labels for {len(x)} images")
    idx = select(len(x), limit, seed)
    x, y = _take(x, idx)[:, None], check_labels(_take(y, idx), NUM_CLASSES[kind], str(fl))
    return RawData(np.ascontiguousarray(x), y, NUM_CLASSES[kind], "idx")


# ------------------------------------------------------------------ image folders
def _resize_center_crop(im, h: int, w: int):
    from PIL import Image

    scale = max(h / im.height, w / im.width)
    nh, nw = max(h, round(im.height * scale)), max(w, round(im.width * scale))
    if (nh, nw) != (im.height, im.width):
        im = im.resize((nw, nh), Image.BILINEAR)
    top, left = (nh - h) // 2, (nw - w) // 2
    return im.crop((left, top, left + w, top + h))


def read_imagefolder(
    root: str, split: str, limit: int | None, seed: int, shape: tuple[int, ...] | None, guard: Guard,
    caps: DataCaps | None = None,
) -> RawData:
    """root/<class>/<image> (or root/<split>/<class>/<image>); classes in sorted order.

    With `shape` = (C, H, W) or (H, W) images are resized (shorter side) and center-cropped
    to H x W and converted to C channels (1 = grayscale, 3 = RGB); without it all images
    must have the same size and are read as RGB.
    """
    from PIL import Image

    top = Path(root)
    if not top.is_dir():
        raise DataError(f"{top.name}: imagefolder root must be a directory of class subdirectories")

    def shown(p: Path) -> str:  # messages name paths relative to the data root, never a symlink's target
        return str(Path(top.name) / p.relative_to(top))

    def inside(p: Path) -> Path:
        try:
            guard(str(p))
        except DataError:
            raise DataError(f"{shown(p)}: resolves outside the allowed dataset roots (a symlink?); "
                            "keep every class directory and image under the configured roots") from None
        return p

    base = top
    if (top / split).is_dir() and any(d.is_dir() for d in inside(top / split).iterdir()):
        base = top / split
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{shown(base)}: no class subdirectories")
    files: list[tuple[Path, int]] = []
    for c, name in enumerate(classes):
        # confine the class directory before listing it; below it, symlinked directories are not followed
        # and every image (a symlink too) is confined as it is listed
        for d, dirs, names in os.walk(inside(base / name), followlinks=False):
            dirs.sort()
            for n in sorted(names):
                f = Path(d) / n
                if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                    files.append((inside(f), c))
    if not files:
        raise DataError(f"{shown(base)}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class subdirectories")
    channels, size = 3, None
    if shape is not None:
        if len(shape) == 3 and shape[0] in (1, 3):
            channels, size = shape[0], shape[1:]
        elif len(shape) == 2:
            size = shape
        else:
            raise DataError(f"imagefolder shape must be (C, H, W) with C 1 or 3, or (H, W); got {list(shape)}")
    caps = caps or DataCaps()
    idx = select(len(files), limit, seed)
    chosen = files if idx is None else [files[i] for i in idx]
    if size is not None:
        caps.check(shown(base), len(chosen), channels * size[0] * size[1])
    xs, ys = [], []
    for f, c in chosen:
        try:
            with Image.open(guard(str(f))) as im:
                # the header's size, before anything is decoded: one image, then all of them at this size
                caps.check(shown(f), 1, im.width * im.height * max(channels, len(im.getbands())))
                if size is None:
                    caps.check(shown(base), len(chosen), im.width * im.height * channels)
                im = im.convert("L" if channels == 1 else "RGB")
                if size is not None:
                    im = _resize_center_crop(im, *size)
                arr = np.asarray(im)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{shown(f)}: not a readable image ({type(exc).__name__})") from None
        if xs and arr.shape != xs[0].shape:
            raise DataError(
                f"{shown(f)}: size {arr.shape[1]}x{arr.shape[0]} differs from {xs[0].shape[1]}x{xs[0].shape[0]}; "
                "pass 'shape' to resize"
            )
        xs.append(arr)
        ys.append(c)
    x = np.stack(xs)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return RawData(np.ascontiguousarray(x), np.asarray(ys, np.int64), len(classes), "imagefolder")


# ------------------------------------------------------------------ tensors (.npz / .safetensors)
def read_tensors(
    root: str, split: str, limit: int | None, seed: int, num_classes: int | None, guard: Guard, caps: DataCaps | None = None
) -> RawData:
    """x (N, D) / (N, H, W) / (N, C, H, W) / (N, H, W, C) and integer y from .npz or .safetensors.

    A directory root holds <split>.npz or <split>.safetensors. uint8 x is scaled to [0, 1];
    float x is used as is (then standardized like everything else). num_classes defaults
    to max(y) + 1.
    """
    p = Path(root)
    if p.is_dir():
        cands = [p / f"{split}{s}" for s in (".safetensors", ".npz")]
        found = [c for c in cands if c.is_file()]
        if not found:
            raise DataError(f"{root}: expected {split}.safetensors or {split}.npz (or pass the file itself)")
        p = found[0]
    path = guard(str(p))
    caps = caps or DataCaps()
    if p.suffix == ".safetensors":
        try:
            from safetensors import safe_open
            from safetensors.numpy import load_file

            with safe_open(path, framework="np") as fh:  # header only: shapes before any tensor is read
                for name in fh.keys():
                    shp = fh.get_slice(name).get_shape()
                    if shp:
                        caps.check(f"{p.name} tensor {name!r}", int(shp[0]), int(np.prod(shp[1:], dtype=np.int64)))
            arrays = load_file(path)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{p}: not a readable .safetensors file ({type(exc).__name__}: {exc})") from None
    elif p.suffix == ".npz":
        arrays = _open_npz(path, caps)
    else:
        raise DataError(f"{p}: tensors must be a .npz or .safetensors file")
    x, y = _pick_keys(arrays, str(p))
    if x.ndim < 2:
        raise DataError(f"{p}: x must have a sample axis and at least one feature axis, got shape {tuple(x.shape)}")
    if len(x) != len(y):
        raise DataError(f"{p}: {len(x)} samples in x but {len(y)} labels")
    if x.dtype.kind not in "uf" or (x.dtype.kind == "u" and x.dtype != np.uint8):
        raise DataError(f"{p}: x must be uint8 or floating point, got dtype {x.dtype}")
    if x.dtype.kind == "f" and x.size and not np.all(np.isfinite(x)):
        raise DataError(f"{p}: x contains NaN or inf")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim > 4:
        raise DataError(f"{p}: x must be (N, D), (N, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
    idx = select(len(x), limit, seed)
    x, y = _take(x, idx), _take(y, idx)
    y_checked = check_labels(y, num_classes if num_classes is not None else 2**62, str(p))
    n_classes = num_classes if num_classes is not None else (int(y_checked.max()) + 1 if y_checked.size else 1)
    return RawData(np.ascontiguousarray(x), y_checked, n_classes, p.suffix.lstrip("."))
