"""timm architectures as `timm:<name>`: a shipped catalog validated torch-free, models built by timm with
pretrained=False, and a parameter cap enforced on the meta device before anything is allocated."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from warm_cli import run_initscore

from initscore import models
from initscore.errors import SpecError
from initscore.models import timm_models

timm = pytest.importorskip("timm")


def test_catalog_matches_the_installed_timm():
    """Regenerate with `python -m initscore.models.timm_catalog` when timm is upgraded."""
    cat = timm_models.catalog()
    assert cat["timm_version"] == timm.__version__
    assert set(cat["models"]) | set(cat["skipped"]) == set(timm.list_models())
    assert len(cat["models"]) > 1000
    for name in ("resnet18", "vit_tiny_patch16_224", "mobilenetv3_small_100"):
        from initscore.models.timm_catalog import describe

        assert cat["models"][name] == describe(name), name


def test_validation_needs_neither_torch_nor_timm():
    code = ("import sys\nfrom initscore.models import validate_spec\n"
            "e, a = validate_spec({'arch': 'timm:vit_tiny_patch16_224', 'args': {'num_classes': 10, 'img_size': 32}})\n"
            "print(e.family, a['num_classes'], a['img_size'], "
            "any(m.split('.')[0] in ('torch', 'timm') for m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["timm", "10", "32", "False"], out.stderr


@pytest.mark.parametrize("spec,needle", [
    ({"arch": "timm:resnet1B"}, "did you mean"),
    ({"arch": "timm:"}, "unknown architecture"),
    ({"arch": "timm:resnet18", "args": {"num_classes": "10"}}, "must be an integer"),
    ({"arch": "timm:resnet18", "args": {"num_classes": 0}}, ">= 1"),
    ({"arch": "timm:resnet18", "args": {"img_size": 32}}, "unknown argument"),  # resnet's constructor has none
    ({"arch": "timm:resnet18", "args": {"pretrained": True}}, "unknown argument"),  # never downloads
    ({"arch": "timm:resnet18", "args": {"in_chans": "1"}}, "'in_chans' must be an integer"),
    ({"arch": "timm:resnet18", "args": {"in_chans": 0}}, "'in_chans' must be >= 1"),
    ({"arch": "timm:resnet18", "args": {"in_chans": 65}}, "'in_chans' must be <= 64"),
    ({"arch": "timm:resnet18", "args": {"drop_rate": "0.1"}}, "'drop_rate' must be a number"),
    ({"arch": "timm:resnet18", "args": {"drop_rate": 1.5}}, "'drop_rate' must be <= 1.0"),
    ({"arch": "timm:resnet18", "args": {"drop_rate": -0.1}}, "'drop_rate' must be >= 0.0"),
    ({"arch": "timm:resnet18", "args": {"drop_rate": float("nan")}}, "'drop_rate' must be finite"),
])
def test_bad_timm_specs_name_the_cause(spec, needle):
    with pytest.raises(SpecError, match=needle):
        models.validate_spec(spec)


def test_timm_model_is_timms_own_init_and_scores_at_32px():
    from initscore.scores import gradcosine

    spec = {"arch": "timm:resnet18", "args": {"num_classes": 10}}
    torch.manual_seed(3)
    ours = models.build(spec)
    torch.manual_seed(3)
    theirs = timm.create_model("resnet18", pretrained=False, num_classes=10)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(ours.state_dict()[k], theirs.state_dict()[k]) for k in ours.state_dict())
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)
    s = gradcosine(ours, (x, y), mode="batch", sub_batches=2)
    assert 0.0 < s.gc <= 1.0 and s.gn > 0


def test_cap_is_checked_on_the_meta_device_without_allocating_or_drawing_random_numbers():
    import resource

    spec = {"arch": "timm:vit_huge_patch14_224", "args": {"num_classes": 10}}  # ~630M parameters, 2.5 GB in float32
    n = models.count_params(spec)
    assert n > 600_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(0)
    with pytest.raises(SpecError, match="over the cap of 100,000,000"):
        models.build(spec, max_params=100_000_000)
    drawn = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(drawn, torch.rand(1))  # the meta build did not advance the RNG
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing like 2.5 GB
    small = {"arch": "timm:resnet18", "args": {"num_classes": 10}}
    assert models.count_params(small) == sum(p.numel() for p in models.build(small, max_params=10**8).parameters())


def test_models_command_lists_the_timm_catalog():
    out = run_initscore("models", "--source", "timm", "--filter", "vit_tiny", "--json", cwd=os.getcwd(), timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows and all(r["name"].startswith("timm:") and "vit_tiny" in r["name"] for r in rows)
    assert "timm:vit_tiny_patch16_224" in {r["name"] for r in rows}
    bad = run_initscore("models", "--source", "nope", cwd=os.getcwd(), timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown model source 'nope'")


def test_first_lookups_from_many_threads_all_see_the_whole_registry():
    """The API validates specs in a thread pool: the first requests arrive together and must not see a registry
    that another thread is still filling (a 422 'unknown architecture' for nb201 in the soak found this)."""
    code = ("import threading\nfrom initscore.models import get_entry\nerrs = []\n"
            "def look(name):\n    try:\n        get_entry(name)\n    except Exception as e:\n        errs.append(str(e))\n"
            "ts = [threading.Thread(target=look, args=(n,)) for n in ['nb201', 'resnet20', 'timm:resnet18', 'mlp'] * 8]\n"
            "[t.start() for t in ts]\n[t.join() for t in ts]\nprint(len(errs), errs[:1])\n")
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.stdout.startswith("0 "), (out.stdout, out.stderr)


def test_in_chans_and_drop_rate_reach_timm_and_are_offered_only_where_the_constructor_takes_them():
    from initscore.scores import gradcosine

    cat = timm_models.catalog()["models"]
    assert cat["resnet18"]["in_chans"] and cat["resnet18"]["drop_rate"]
    entry, args = models.validate_spec({"arch": "timm:resnet18", "args": {"in_chans": 1, "drop_rate": 0.25}})
    assert args["in_chans"] == 1 and args["drop_rate"] == 0.25 and isinstance(args["drop_rate"], float)
    net = models.build({"arch": "timm:resnet18", "args": {"num_classes": 10, "in_chans": 1, "drop_rate": 0.25}})
    assert net.conv1.in_channels == 1 and net.drop_rate == 0.25
    x, y = torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 2, 3])
    assert 0.0 < gradcosine(net, (x, y), mode="batch").gc <= 1.0
    lacking = {k: [n for n, i in cat.items() if not i[k]] for k in ("in_chans", "drop_rate")}
    for key, names in lacking.items():
        assert len(names) < len(cat)
        if names:  # an architecture whose constructor does not take it is refused by name, torch-free
            with pytest.raises(SpecError, match="unknown argument"):
                models.validate_spec({"arch": f"timm:{names[0]}", "args": {key: 1}})
