"""initscore.weights_file: the one reader/writer of rectified-weights files (CLI, worker, client)."""
from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest
import torch

from initscore import weights_file
from initscore.contract import RectifyRequest, request_hash
from initscore.errors import OptionsError

REQUEST = {"kind": "rectify", "model": {"arch": "mlp", "args": {"depth": 2}},
           "data": {"kind": "synthetic", "shape": [3, 4, 4], "num_classes": 3, "batch_size": 4},
           "options": {"iters": 2, "lr": 0.05}}


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(3, 4, generator=g), "a.bias": torch.randn(3, generator=g, dtype=torch.float64),
            "t": torch.randn(8, generator=g)[::2]}  # a non-contiguous view is written as its values


def test_round_trip_keeps_tensors_and_provenance(tmp_path):
    prov = weights_file.Provenance.for_request(REQUEST, summary={"gamma": 1.5, "scales": {"a.weight": 0.5}})
    assert prov.request_hash == request_hash(RectifyRequest.model_validate(REQUEST))
    sha = weights_file.save(tmp_path / "sub" / "w.safetensors", _state(), prov)
    data = (tmp_path / "sub" / "w.safetensors").read_bytes()
    import hashlib

    assert sha == hashlib.sha256(data).hexdigest()
    state, back = weights_file.load(data)
    assert back == prov and back.summary["scales"] == {"a.weight": 0.5}
    for k, v in _state().items():
        assert torch.equal(state[k], v) and state[k].dtype == v.dtype
    assert weights_file.read_provenance(tmp_path / "sub" / "w.safetensors") == prov


def test_foreign_and_broken_files_are_refused_with_a_reason(tmp_path):
    from safetensors.torch import save

    foreign = save({"x": torch.zeros(2)}, metadata={"format": "pt"})
    with pytest.raises(OptionsError, match="not an initscore weights file"):
        weights_file.read_provenance(foreign)
    with pytest.raises(OptionsError, match="8-byte"):
        weights_file.read_provenance(b"abc")
    with pytest.raises(OptionsError, match="out of range"):
        weights_file.read_provenance(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(OptionsError, match="not JSON"):
        weights_file.read_provenance(struct.pack("<Q", 4) + b"\xff\xfe{}")
    with pytest.raises(OptionsError, match=".safetensors"):
        weights_file.save(tmp_path / "w.pt", _state(), weights_file.Provenance.for_request(REQUEST))


def test_reading_provenance_needs_no_torch(tmp_path):
    path = tmp_path / "w.safetensors"
    weights_file.save(path, _state(), weights_file.Provenance.for_request(REQUEST))
    code = ("import sys\nfrom initscore.weights_file import read_provenance\n"
            f"p = read_provenance({str(path)!r})\nprint(p.arch, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["mlp", "False"], out.stderr
    meta = weights_file.Provenance.for_request(REQUEST).to_metadata()
    assert all(isinstance(v, str) for v in meta.values()) and json.loads(meta["request"])["kind"] == "rectify"
