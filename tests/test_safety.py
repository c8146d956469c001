"""No pickle on the service path: the service, worker and client never use pickle,
and never call torch.load without weights_only=True (issue 7, item 5).

The scan reads the source files, so a new file that adds `import pickle` fails here.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICE_PATH_DIRS = ("service", "worker", "client")
BANNED_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}


def _sources() -> list[Path]:
    files: list[Path] = []
    for d in SERVICE_PATH_DIRS:
        files += sorted((ROOT / d).rglob("*.py"))
    files.append(ROOT / "initscore" / "jobs.py")
    return [f for f in files if f.exists()]


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bad += [f"{path}:{node.lineno} import {a.name}" for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in BANNED_MODULES:
            bad.append(f"{path}:{node.lineno} from {node.module} import ...")
        elif isinstance(node, ast.ImportFrom):
            bad += [
                f"{path}:{node.lineno} imports RQ's pickle serializer {a.name}"
                for a in node.names
                if a.name in {"PickleSerializer", "DefaultSerializer"}
            ]
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name == "load" and isinstance(f, ast.Attribute) and getattr(f.value, "id", "") == "torch":
                ok = any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords
                )
                if not ok:
                    bad.append(f"{path}:{node.lineno} torch.load without weights_only=True")
            if name in {"PickleSerializer", "DefaultSerializer"}:
                bad.append(f"{path}:{node.lineno} uses RQ's pickle serializer {name}")
        elif isinstance(node, ast.Attribute) and node.attr in {"PickleSerializer", "DefaultSerializer"}:
            bad.append(f"{path}:{node.lineno} refers to RQ's pickle serializer {node.attr}")
    return bad


def test_service_path_has_sources() -> None:
    if not _sources():
        pytest.skip("service/worker/client not written yet")


def test_no_pickle_on_service_path() -> None:
    bad = [v for f in _sources() for v in _violations(f)]
    assert not bad, "\n".join(bad)


def test_scanner_catches_pickle(tmp_path: Path) -> None:
    """The scanner itself must fail on the patterns it bans (so the test above can fail)."""
    src = tmp_path / "bad.py"
    src.write_text(
        "import pickle\nfrom rq.serializers import DefaultSerializer\nimport torch\n"
        "torch.load('x')\ntorch.load('y', weights_only=True)\n"
    )
    found = _violations(src)
    assert len(found) == 3, found
