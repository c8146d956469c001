"""Rectification-only ablation on a tiny MLP and synthetic data: fields, before == same init across variants."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from research.ablation import ablation_markdown, options_for, per_seed_lines, run_ablation, variant
from initscore.experiments.config import DataConfig


def test_ablation_rows_and_markdown():
    data = DataConfig(kind="synthetic", shape=(3, 4, 4), train_size=64, test_size=1, heldout_size=32,
                      heldout_batch_size=16)
    spec = {"arch": "mlp", "args": {"in_features": 48, "hidden": 8, "depth": 2}}
    rows = run_ablation(spec, [0, 1], iters=2, batch_size=16, data=data,
                        variants={"default": variant(), "gamma 1x": variant(gamma_factor=1.0)}, log=lambda s: None)
    assert [r["variant"] for r in rows] == ["default", "gamma 1x"]
    for r in rows:
        assert len(r["runs"]) == 2 and r["delta_exact_gc"]["n"] == 2
    # same seed -> same initial network -> same "before" in every variant
    assert rows[0]["runs"][1]["exact_gc_before"] == rows[1]["runs"][1]["exact_gc_before"]
    assert rows[1]["runs"][0]["gamma"] is not None
    assert "| mlp | default |" in ablation_markdown(rows)
    lines = per_seed_lines(rows)
    assert len(lines) == 2 and lines[1].startswith("| gamma 1x | ")
    r0 = rows[0]["runs"]
    cells = [c.strip() for c in lines[0].strip("|").split("|")]
    assert cells[1] == ", ".join(f"{x['exact_gc_after'] - x['exact_gc_before']:+.3f}" for x in r0)
    assert cells[4] == ", ".join(str(x["returned_iterate"]) for x in r0) and len(cells) == 7
    assert cells[6] == ", ".join(f"{sum(g <= x['gamma'] for g in x['heldout_gmax_batches'])}/2" for x in r0)


def test_tuning_main_runs_the_bench_scripts_command_line(tmp_path, capsys):
    """bench/nio_*_ablation.py's shared command line on the real ResNet-20 and CIFAR-10 (one seed, one cheap
    variant restricted to the classifier): the JSON rows and the printed per-seed row agree."""
    import json

    from research.ablation import tuning_main

    out = tmp_path / "rows.json"
    rows = tuning_main({"fc, 1 iteration": variant(iters=1, mode="sample", batch_size=16,
                                                   scale_tensors=["fc.weight"])},
                       "test", "t", ["--pool", "200", "--seeds", "10", "--json", str(out)])
    assert json.loads(out.read_text())[0]["variant"] == "fc, 1 iteration" and len(rows[0]["runs"]) == 1
    printed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| fc, 1 iteration |")]
    assert printed == per_seed_lines(rows)
    assert rows[0]["runs"][0]["largest_scales"][0][0] == "fc.weight"  # the only scaled tensor moved


def test_every_default_variant_runs():
    """The GC-only variant (gn_weight=0) must run, not be skipped because rectify's signature changed."""
    from research.ablation import VARIANTS
    data = DataConfig(kind="synthetic", shape=(3, 4, 4), train_size=64, test_size=1, heldout_size=32,
                      heldout_batch_size=16)
    spec = {"arch": "mlp", "args": {"in_features": 48, "hidden": 8, "depth": 2}}
    skipped: list[str] = []
    rows = run_ablation(spec, [0], iters=1, batch_size=16, data=data,
                        variants={k: v for k, v in VARIANTS.items() if "gn_weight" in v.options.model_fields_set},
                        log=skipped.append)
    assert [r["variant"] for r in rows] == [k for k, v in VARIANTS.items() if "gn_weight" in v.options.model_fields_set]
    assert rows
    assert not any("skip" in s for s in skipped)


def test_a_variant_is_validated_options_over_the_base():
    """A variant's explicitly set options override the base's, iters and seed included; the others keep the base's;
    a misspelt or out-of-range option fails where the variant is written, by the options model's own check."""
    o = options_for(variant(mode="sample", gn_weight=0.0), iters=7, seed=3)
    assert (o.mode, o.gn_weight, o.iters, o.seed, o.lr, o.overlap) == ("sample", 0.0, 7, 3, 0.1, 0.6)
    assert options_for(variant(iters=1), iters=7, seed=3).iters == 1
    assert options_for(variant(optimizer="sgd"), iters=1, seed=0).optimizer == "sgd"
    with pytest.raises(ValidationError, match="gn_wieght"):
        variant(gn_wieght=0.0)
    with pytest.raises(ValidationError, match="gamma_margin"):
        variant(gamma_margin=1.5)
    with pytest.raises(ValidationError, match="select='best'"):
        variant(method="gradinit", select="best")
    with pytest.raises(TypeError, match="Variant"):
        run_ablation({"arch": "mlp", "args": {}}, [0], variants={"old": {"gn_weight": 0.0}}, log=lambda s: None)
