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



ENGINE = ("scores", "nio", "bn", "hook_grads", "grad_samplers", "segments", "fast_conv", "baselines",
          "rescale_adam", "wishart", "propagation")
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
