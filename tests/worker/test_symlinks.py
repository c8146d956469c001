"""A symlink inside an allowed root that points outside it: the worker neither lists nor names the outside.

Real parts: the app on the real Redis, a real RQ worker (burst, in-process), real
files. `class1 -> /usr/share` used to make the worker walk all of /usr/share and put
a path from there in the job's error.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from svc_helpers import run_worker_burst


def _png(path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)


def _job(tc, root: Path) -> dict:
    req = {"kind": "score", "model": {"arch": "mlp", "args": {"in_features": 192, "hidden": 8, "depth": 1, "num_classes": 2}},
           "data": {"kind": "imagefolder", "root": str(root), "batch_size": 2}}
    resp = tc.post("/v1/jobs", json=req)
    assert resp.status_code == 202, resp.text
    return resp.json()


def test_symlinked_class_dir_outside_the_root(queued, tmp_path: Path) -> None:
    settings, backend, tc = queued()
    folder = Path(settings.allowed_roots[0]) / "folder"
    _png(folder / "class0" / "a.png")
    _png(tmp_path / "outside" / "deep" / "secret-name.png")
    os.symlink(tmp_path / "outside", folder / "class1")
    job = _job(tc, folder)
    run_worker_burst(backend, settings)
    got = tc.get(f"/v1/jobs/{job['id']}").json()
    assert got["status"] == "failed" and got["error"]["type"] == "data-error", got
    detail = got["error"]["detail"]
    assert "class1" in detail and "outside the allowed" in detail, detail
    assert "secret-name" not in detail and "deep" not in detail and str(tmp_path) not in detail, detail


def test_class_dir_linked_to_usr_share_is_not_walked(tmp_path: Path) -> None:
    from initscore.data.readers import read_imagefolder
    from initscore.dataref import confine
    from initscore.errors import DataError

    root = tmp_path / "root"
    _png(root / "folder" / "class0" / "a.png")
    os.symlink("/usr/share", root / "folder" / "class1")
    t0 = time.perf_counter()
    try:
        read_imagefolder(str(root / "folder"), "train", None, 0, None, lambda p: confine(p, [str(root)]))
    except DataError as exc:
        assert "class1" in str(exc) and "/usr" not in str(exc) and str(root) not in str(exc), exc
    else:
        raise AssertionError("a class directory outside the roots was read")
    assert time.perf_counter() - t0 < 5, "the reader walked /usr/share"


def test_symlinked_file_outside_the_root(queued, tmp_path: Path) -> None:
    settings, backend, tc = queued()
    folder = Path(settings.allowed_roots[0]) / "folder2"
    _png(folder / "class0" / "a.png")
    _png(folder / "class1" / "b.png")
    _png(tmp_path / "secret" / "hidden.png")
    os.symlink(tmp_path / "secret" / "hidden.png", folder / "class1" / "c.png")
    job = _job(tc, folder)
    run_worker_burst(backend, settings)
    got = tc.get(f"/v1/jobs/{job['id']}").json()
    assert got["status"] == "failed" and got["error"]["type"] == "data-error", got
    detail = got["error"]["detail"]
    assert "c.png" in detail and "secret" not in detail and str(tmp_path) not in detail, detail


def test_symlink_inside_the_root_is_fine(queued) -> None:
    settings, backend, tc = queued()
    data = Path(settings.allowed_roots[0])
    _png(data / "pool" / "x.png")
    _png(data / "pool" / "y.png")
    folder = data / "folder3"
    folder.mkdir()
    os.symlink(data / "pool", folder / "class0")
    os.symlink(data / "pool", folder / "class1")
    job = _job(tc, folder)
    run_worker_burst(backend, settings)
    got = tc.get(f"/v1/jobs/{job['id']}").json()
    assert got["status"] == "finished", got
