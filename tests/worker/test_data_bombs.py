"""Decoded-size bombs are refused before allocation, by a REAL worker process, with RSS growth < 100 MB.

Three small files that decode to hundreds of MB: a compressed .npz (0.6 MB -> 600 MB
of uint8 images, as found by the adversarial run), a gzip'ed MNIST IDX file, and a
12000 x 12000 PNG in an image folder. A `python -m worker.main` process (default
caps) runs the three jobs; each must fail with a `data-error` that names the cap and
its setting, and the worker's peak RSS (VmHWM) may grow by less than 100 MB.
"""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from svc_helpers import REPO

LIMIT_MB = 100


def _npz_bomb(path: Path, n: int) -> None:
    np.savez_compressed(path, x=np.zeros((n, 3, 32, 32), np.uint8), y=np.zeros(n, np.int64))


def _idx_bomb(root: Path, n: int) -> None:
    root.mkdir()
    with gzip.open(root / "t10k-images-idx3-ubyte.gz", "wb", compresslevel=1) as g:
        g.write(bytes([0, 0, 8, 3]) + np.array([n, 28, 28], ">u4").tobytes())
        chunk = bytes(28 * 28 * 10_000)
        for _ in range(n // 10_000):
            g.write(chunk)
    with gzip.open(root / "t10k-labels-idx1-ubyte.gz", "wb") as g:
        g.write(bytes([0, 0, 8, 1]) + np.array([n], ">u4").tobytes() + bytes(n))


def _png_bomb(root: Path) -> None:
    from PIL import Image

    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        Image.new("L", (12_000, 12_000)).save(root / c / "big.png", optimize=False)


def _hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_decoded_size_bombs_are_refused_without_allocating(queued, tmp_path: Path) -> None:
    settings, backend, tc = queued()
    data = Path(settings.allowed_roots[0])
    _npz_bomb(data / "bomb.npz", 195_313)  # 600 MB of images
    assert (data / "bomb.npz").stat().st_size < 2 << 20
    _idx_bomb(data / "mnist", 800_000)  # 627 MB of images
    _png_bomb(data / "folder")
    env = dict(os.environ, OMP_NUM_THREADS="1", INITSCORE_REDIS_URL=settings.redis_url,
               INITSCORE_ARTIFACT_DIR=str(settings.artifact_dir), INITSCORE_ALLOWED_ROOTS=",".join(settings.allowed_roots),
               PYTHONPATH=str(REPO))
    for k in ("INITSCORE_MAX_DATA_BYTES", "INITSCORE_MAX_DATA_SAMPLES"):
        env.pop(k, None)
    proc = subprocess.Popen([sys.executable, "-m", "worker.main", "--queues", "initscore-score"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not backend.index.live_workers(30.0):  # preloaded (torch imported) and listening
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.2)
        time.sleep(1.0)
        before = _hwm_kb(proc.pid)
        model = {"arch": "mlp", "args": {"in_features": 784, "hidden": 8, "depth": 1, "num_classes": 10}}
        refs = [
            {"kind": "tensors", "root": str(data / "bomb.npz"), "batch_size": 8, "num_classes": 10},
            {"kind": "mnist", "root": str(data / "mnist"), "split": "test", "batch_size": 8},
            {"kind": "imagefolder", "root": str(data / "folder"), "batch_size": 2},
        ]
        ids = [tc.post("/v1/jobs", json={"kind": "score", "model": model, "data": r}).json()["id"] for r in refs]
        views = []
        for j in ids:
            while (v := tc.get(f"/v1/jobs/{j}").json())["status"] not in ("finished", "failed"):
                assert proc.poll() is None, "the worker died"
                assert time.time() < deadline + 120, v
                time.sleep(0.2)
            views.append(v)
        growth_mb = (_hwm_kb(proc.pid) - before) / 1024
    finally:
        proc.kill()
        proc.wait(timeout=20)
    for v in views:
        assert v["status"] == "failed" and v["error"]["type"] == "data-error", v
        detail = v["error"]["detail"]
        assert "INITSCORE_MAX_DATA_BYTES" in detail and "cap" in detail, detail
    print(f"worker peak RSS (VmHWM) growth over the three bombs: {growth_mb:.1f} MB")
    assert growth_mb < LIMIT_MB, f"worker peak RSS grew by {growth_mb:.0f} MB"


def test_npz_member_header_is_read_without_decompressing(tmp_path: Path) -> None:
    from initscore.data.readers import DataCaps, npz_members
    from initscore.errors import DataError

    _npz_bomb(tmp_path / "b.npz", 50_000)
    members = npz_members(str(tmp_path / "b.npz"))
    assert members["x"] == ((50_000, 3, 32, 32), np.dtype(np.uint8)) and members["y"][0] == (50_000,)
    caps = DataCaps(max_bytes=64 << 20, max_samples=10**6)
    try:
        caps.check_npz(str(tmp_path / "b.npz"), "b.npz")
    except DataError as exc:
        assert "64 MiB" in str(exc) or str(64 << 20) in str(exc)
    else:
        raise AssertionError("a 153 MB member passed a 64 MiB cap")
    with zipfile.ZipFile(tmp_path / "b.npz") as z:  # the archive really is small (compressed)
        assert sum(i.compress_size for i in z.infolist()) < 2 << 20
