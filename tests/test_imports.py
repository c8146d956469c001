"""The torch-free parts of the package must import without torch (cheap `import initscore`)."""
from __future__ import annotations

import subprocess
import sys

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
