"""docker-compose.yml against the Compose Specification schema (vendored subset), and the Dockerfiles' promises.

No Docker engine runs here, so the file is checked statically: schema-valid, Redis with
append-only persistence and a healthcheck, the API and one GPU worker sharing the
artifact volume, the worker reserving one GPU, the API image without torch.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

jsonschema = pytest.importorskip("jsonschema")
yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "compose_schema.json").read_text())


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _errors(doc: dict) -> list[str]:
    v = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in v.iter_errors(doc)]


def test_compose_file_is_valid() -> None:
    assert _errors(_compose()) == []


def test_schema_rejects_mistakes() -> None:
    base = _compose()
    bad = copy.deepcopy(base)
    bad["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"][0].pop("capabilities")
    assert _errors(bad)
    bad = copy.deepcopy(base)
    bad["services"]["api"]["healtcheck"] = bad["services"]["api"].pop("healthcheck")  # typo
    assert _errors(bad)
    bad = copy.deepcopy(base)
    bad["services"]["api"]["depends_on"]["redis"]["condition"] = "service_ready"
    assert _errors(bad)
    bad = copy.deepcopy(base)
    bad["services"]["redis"]["healthcheck"]["interval"] = "5 seconds"
    assert _errors(bad)


def test_compose_topology() -> None:
    c = _compose()
    s = c["services"]
    assert set(s) == {"redis", "api", "worker"}
    redis_cmd = " ".join(s["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and s["redis"]["healthcheck"]["test"]
    for name in ("api", "worker"):
        assert "artifacts:/artifacts" in s[name]["volumes"]
        assert s[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        env = s[name]["environment"]
        assert env["INITSCORE_REDIS_URL"].startswith("redis://redis:6379") and all(k.startswith("INITSCORE_") for k in env)
    assert s["api"]["cpu_shares"] > s["worker"]["cpu_shares"]  # polls before batch work when the host's cores are busy
    dev = s["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert dev == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "artifacts" in c["volumes"] and "redis-data" in c["volumes"]
    assert s["api"]["build"]["dockerfile"] == "docker/Dockerfile.api" and s["worker"]["build"]["dockerfile"] == "docker/Dockerfile.worker"


def test_dockerfiles() -> None:
    api = (REPO / "docker" / "Dockerfile.api").read_text()
    wrk = (REPO / "docker" / "Dockerfile.worker").read_text()
    assert "slim" in api.splitlines()[[i for i, l in enumerate(api.splitlines()) if l.startswith("FROM")][0]]
    install = " ".join(l for l in api.splitlines() if "pip install" in l or l.strip().startswith('"'))
    assert "torch" not in install and 'pip install ".[server]"' in api  # core + server extra, nothing else
    assert 'pip install ".[engine,server]"' in wrk
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    api_deps = " ".join(project["dependencies"] + extras["server"]).lower()
    assert not any(heavy in api_deps for heavy in ("torch", "timm", "matplotlib", "safetensors"))
    assert any(d.startswith("torch") for d in extras["engine"]) and extras["all"] == ["initscore[engine,server]"]
    assert "assert 'torch' not in sys.modules" in api
    assert "cuda" in [l for l in wrk.splitlines() if l.startswith("FROM")][0]
    assert "worker.main" in wrk
