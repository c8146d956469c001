"""Your own network as ONNX through the real service (real Redis, real RQ worker, real files): upload, score and
rectify it with its own initial weights, get the weights back under the file's initializer names and as a rectified
.onnx; another key cannot use the upload; bad uploads are refused with the cause and nothing is stored."""
from __future__ import annotations

import io
import time
import warnings

import pytest

from svc_helpers import MLP_RECTIFY, MLP_SCORE, run_worker_burst
from svc_helpers import expect_problem as _problem

onnx = pytest.importorskip("onnx")

OCTET = {"Content-Type": "application/octet-stream"}


def _exported(spec: dict) -> tuple[bytes, object]:
    import torch

    from initscore import models

    torch.manual_seed(123)  # not the service's seed: the upload's own weights must be the ones scored
    net = models.build(spec)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(2, 3, 4, 4),), f, dynamo=False, opset_version=17, do_constant_folding=False,
                          input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    return f.getvalue(), net


def _objects(settings) -> set[str]:
    root = settings.artifact_dir / "objects"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_onnx_upload_scored_and_rectified_with_its_own_weights(queued) -> None:
    import torch

    from initscore.contract import DataRef
    from initscore.data import load
    from initscore.onnx_model import from_bytes
    from initscore.scores import gradcosine
    from initscore.weights_file import load as load_weights
    from service.deps import hash_key

    settings, backend, tc = queued(api_keys=[hash_key("a"), hash_key("b")])
    a, b = {"Authorization": "Bearer a"}, {"Authorization": "Bearer b"}
    data, original = _exported(MLP_RECTIFY["model"])
    up = tc.post("/v1/models", content=data, headers={**OCTET, **a})
    assert up.status_code == 201, up.text
    sha = up.json()["sha256"]
    spec = up.json()["spec"]
    assert spec == {"arch": "onnx", "args": {"sha256": sha}} and up.json()["summary"]["opset"] == 17
    assert tc.post("/v1/models", content=data, headers={**OCTET, **a}).status_code == 200  # already there
    assert tc.get(f"/v1/models/{sha}", headers=a).json()["sha256"] == sha
    _problem(tc.get(f"/v1/models/{sha}", headers=b), 404)

    score = tc.post("/v1/jobs", json={**MLP_SCORE, "model": spec}, headers=a).json()
    rect = tc.post("/v1/jobs", json={**MLP_RECTIFY, "model": spec}, headers=a).json()
    batch = tc.post("/v1/jobs", json={"kind": "batch", "models": [spec, MLP_SCORE["model"]], "data": MLP_SCORE["data"]},
                    headers=a).json()
    body = _problem(tc.post("/v1/jobs", json={**MLP_SCORE, "model": spec}, headers=b), 422)  # not b's upload
    assert body["errors"][0]["loc"] == "model.args.sha256"
    run_worker_burst(backend, settings)

    got = tc.get(f"/v1/jobs/{score['id']}", headers=a).json()
    assert got["status"] == "finished", got
    ref = DataRef.model_validate(MLP_SCORE["data"])
    x, y = load(ref).batch(ref.batch_size, ref.seed)
    local = gradcosine(original, (x, y))  # the exported module itself, not a reseeded copy
    assert got["result"]["gc"] == pytest.approx(local.gc, rel=1e-5) and got["result"]["gn"] == pytest.approx(local.gn, rel=1e-5)
    ranked = tc.get(f"/v1/jobs/{batch['id']}", headers=a).json()["result"]["entries"]
    assert {e["model"]["arch"] for e in ranked if e["status"] == "finished"} == {"onnx", "mlp"}

    done = tc.get(f"/v1/jobs/{rect['id']}", headers=a).json()
    assert done["status"] == "finished", done
    state, prov = load_weights(tc.get(f"/v1/jobs/{rect['id']}/weights", headers=a).content)
    assert set(state) == {n for n, _ in original.named_parameters()}  # the file's initializer names = PyTorch's
    assert prov.request["model"] == spec
    original.load_state_dict(state)  # maps onto the user's own module by name
    onnx_file = tc.get(f"/v1/jobs/{rect['id']}/onnx", headers=a)
    assert onnx_file.status_code == 200 and done["result"]["onnx_sha256"]
    rebuilt = from_bytes(onnx_file.content)
    for k, v in state.items():
        assert torch.equal(rebuilt.get_parameter(k).detach(), v), k
    _problem(tc.get(f"/v1/jobs/{rect['id']}/onnx", headers=b), 404)
    _problem(tc.get(f"/v1/jobs/{score['id']}/onnx", headers=a), 404)


def test_bad_uploads_are_refused_with_the_cause_and_nothing_is_stored(queued) -> None:
    from onnx import TensorProto, helper

    settings, backend, tc = queued(max_model_bytes=64 * 1024)
    before = _objects(settings)
    body = _problem(tc.post("/v1/models", content=b"\x08\x01garbage" * 100, headers=OCTET), 422)
    assert "not an ONNX model" in body["detail"]
    _problem(tc.post("/v1/models", content=b"{}", headers={"Content-Type": "application/json"}), 415)
    _problem(tc.post("/v1/models", content=b"x" * (64 * 1024 + 1), headers=OCTET), 413)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4, 4])
    loop = helper.make_model(helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"], name="hm")], "g", [x], [y]),
                             opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    t0 = time.perf_counter()
    body = _problem(tc.post("/v1/models", content=loop, headers=OCTET), 422)
    assert time.perf_counter() - t0 < 1.0
    assert "'Hardmax' (node 'hm') is not supported" in body["detail"]
    assert _objects(settings) == before  # nothing stored
    assert backend.queue_depths()["initscore-score"] == 0  # a bad upload never reaches a worker
    _problem(tc.post("/v1/jobs", json={**MLP_SCORE, "model": {"arch": "onnx", "args": {"sha256": "0" * 64}}}), 422)
    _problem(tc.post("/v1/jobs", json={**MLP_SCORE, "model": {"arch": "onnx", "args": {"sha256": "xyz"}}}), 422)


def _refs(settings) -> set[str]:
    root = settings.artifact_dir / "refs" / "models"
    return {p.name for p in root.rglob("*.json")} if root.exists() else set()


def test_upload_while_the_store_cannot_write_is_503_stores_nothing_and_a_retry_succeeds(queued) -> None:
    """The objects directory replaced by a plain file: every object write fails (even as root). The upload is
    answered 503 store-unavailable problem+json, nothing is stored and the model is unknown; once the directory is
    back, the same upload is stored (201) and usable."""
    settings, backend, tc = queued()
    data, _ = _exported(MLP_SCORE["model"])
    objects = settings.artifact_dir / "objects"
    objects.mkdir(parents=True, exist_ok=True)
    before_objects, before_refs = _objects(settings), _refs(settings)
    objects.rmdir()
    objects.write_text("not a directory")
    r = tc.post("/v1/models", content=data, headers=OCTET)
    body = _problem(r, 503)
    assert body["type"].endswith(":store-unavailable") and "artifact store" in body["detail"], body
    objects.unlink()
    assert _objects(settings) == before_objects and _refs(settings) == before_refs
    sha = __import__("hashlib").sha256(data).hexdigest()
    _problem(tc.get(f"/v1/models/{sha}"), 404)
    body = _problem(tc.post("/v1/jobs", json={**MLP_SCORE, "model": {"arch": "onnx", "args": {"sha256": sha}}}), 422)
    assert body["errors"][0]["loc"] == "model.args.sha256"
    assert backend.queue_depths()["initscore-score"] == 0

    retry = tc.post("/v1/models", content=data, headers=OCTET)
    assert retry.status_code == 201 and retry.json()["sha256"] == sha, retry.text
    assert sha in _objects(settings)
    assert tc.get(f"/v1/models/{sha}").json()["sha256"] == sha
    assert tc.post("/v1/jobs", json={**MLP_SCORE, "model": retry.json()["spec"]}).status_code == 202
