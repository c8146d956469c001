"""The torch-free parts of the package must import without torch (cheap `import initscore`)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CHECK = r"""
import sys
import initscore, initscore.contract, initscore.errors, initscore.models
names = [m["name"] for m in initscore.models.list_models()]
assert "mlp" in names, names
initscore.models.get_entry("mlp").num_params({"depth": 2})
leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
assert not leaked, leaked[:5]
print("ok", len(names))
"""


def test_contract_and_registry_import_without_torch() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_lazy_engine_attribute_unknown_name() -> None:
    import initscore

    try:
        initscore.does_not_exist  # noqa: B018
    except AttributeError as exc:
        assert "does_not_exist" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("unknown attribute did not raise")



ENGINE = ("scores", "nio", "bn", "mode_caches", "hook_grads", "grad_samplers", "segments", "fast_conv", "grad_plan",
          "baselines", "rescale_adam", "wishart", "propagation")
FORBIDDEN = ("initscore.models", "service", "worker", "client")


def _imported_modules(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names, at any depth (function-local imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_engine_imports_no_model_family_nor_service_worker_client() -> None:
    """The engine reaches layers through registries (grad samplers), never the model zoo or the server side."""
    root = Path(__file__).resolve().parents[1] / "initscore"
    bad = {}
    for name in ENGINE:
        hits = sorted(m for m in _imported_modules(root / f"{name}.py")
                      if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
        if hits:
            bad[name] = hits
    assert not bad, bad


# package (a folder of the repository) -> the top-level modules it must never import, at any depth of any file
SERVER_RULES: dict[str, tuple[str, ...]] = {
    "service": ("worker", "torch", "torchvision"),          # the API reaches the worker by a job-function name
    "worker": ("service",),                                 # the worker shares the server core, not the API
    "initscore/server": ("service", "worker", "torch", "torchvision"),  # the core both of them import
    "client": ("service", "worker", "torch", "torchvision"),  # torch only inside initscore.weights_file, lazily
}


def import_violations(repo: Path) -> dict[str, list[str]]:
    """``{file: [forbidden module, ...]}`` over SERVER_RULES for the tree at ``repo`` (function-local imports included)."""
    bad: dict[str, list[str]] = {}
    for package, forbidden in SERVER_RULES.items():
        for path in sorted((repo / package).rglob("*.py")):
            hits = sorted(m for m in _imported_modules(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
            if hits:
                bad[str(path.relative_to(repo))] = hits
    return bad


def test_service_and_worker_do_not_import_each_other_and_the_server_side_imports_no_torch() -> None:
    """`service` and `worker` meet only in `initscore.server`; the API, the server core and the client never import torch."""
    repo = Path(__file__).resolve().parents[1]
    assert all((repo / p).is_dir() for p in SERVER_RULES)  # a renamed folder would make the scan vacuous
    assert import_violations(repo) == {}


def test_import_rule_scan_sees_function_local_imports(tmp_path: Path) -> None:
    """The scan reports an import hidden in a function body (the form the old inline backend used)."""
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "queue.py").write_text("def enqueue():\n    from worker.jobs import run_inline\n")
    for p in ("worker", "initscore/server", "client"):
        (tmp_path / p).mkdir(parents=True)
    assert import_violations(tmp_path) == {"service/queue.py": ["worker.jobs", "worker.jobs.run_inline"]}


SERVER_CORE_CHECK = r"""
import sys
import initscore.server.lifecycle, initscore.server.queue, initscore.server.settings, service.app, client
leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.") or m in ("worker", "worker.jobs"))
assert not leaked, leaked[:5]
print("ok")
"""


def test_server_core_and_api_load_neither_torch_nor_the_worker() -> None:
    out = subprocess.run([sys.executable, "-c", SERVER_CORE_CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")
