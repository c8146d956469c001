"""The paper / released-code presets: their values, and a named source for every value."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from initscore.experiments.config import NIO_PRESETS, PRESETS, SOURCES, NioPreset


def test_every_value_of_every_nio_preset_names_its_source():
    for name, p in NIO_PRESETS.items():
        keys = {f"rectify.{k}" for k in p.rectify} | {"batch_size"} | \
               {f"gamma_by_model.{k}" for k in p.gamma_by_model} | {f"training.{k}" for k in p.training}
        assert set(p.sources) == keys, name
        assert all(p.sources[k] and set(p.sources[k]) <= set(SOURCES) for k in keys), name
        assert set(p.unverified) == {k for k in keys if "engine-default" in p.sources[k]}, name
        assert "2210.05956" in p.source or "GradCosine" in p.source
        assert "Zhu" not in p.source  # Zhu et al. wrote GradInit; NIO is Yang, Wang, Yuan & Lin


def test_a_preset_without_a_source_or_with_a_wrong_unverified_list_is_refused():
    good = NIO_PRESETS["paper-imagenet"].model_dump()
    missing = {**good, "sources": {k: v for k, v in good["sources"].items() if k != "rectify.lr"}}
    with pytest.raises(ValidationError, match="rectify.lr"):
        NioPreset.model_validate(missing)
    with pytest.raises(ValidationError, match="unverified"):
        NioPreset.model_validate({**good, "unverified": ("rectify.gamma",)})
    with pytest.raises(ValidationError, match="one or more of"):
        NioPreset.model_validate({**good, "sources": {**good["sources"], "rectify.lr": ("a blog",)}})


def test_paper_presets_carry_the_sourced_values():
    cifar = NIO_PRESETS["paper-cifar"]
    assert cifar.gamma_by_model == {"resnet110_nobn": 4.0, "resnet110_bn": 5.0}
    assert all(cifar.sources[f"gamma_by_model.{k}"] == ("audit",) for k in cifar.gamma_by_model)
    t = cifar.training
    assert (t["epochs"], t["weight_decay_on"], cifar.batch_size) == (500, "every parameter", 128)
    # what the paper's text was needed for and could not be read: tau, r, D, T, the optimizer, the WRN gammas
    assert set(cifar.unverified) == {"rectify.lr", "rectify.overlap", "rectify.sub_batches", "rectify.iters",
                                     "rectify.optimizer", "rectify.gamma"}
    assert "wrn28_10_nobn" not in cifar.gamma_by_model and "wrn28_10_bn" not in cifar.gamma_by_model
    imnet = NIO_PRESETS["paper-imagenet"]
    assert (imnet.rectify["lr"], imnet.rectify["sub_batches"], imnet.rectify["overlap"], imnet.rectify["iters"],
            imnet.batch_size) == (3e-3, 4, 0.2, 100, 64)
    for key in ("rectify.lr", "rectify.sub_batches", "rectify.overlap", "rectify.iters", "batch_size"):
        assert imnet.sources[key] == ("audit", "released-config")  # the audit's B.3 values = the released config's
    assert set(imnet.unverified) == {"rectify.gamma", "rectify.optimizer"}  # B.3's gamma: the released 10 is not it
    official = NIO_PRESETS["official-imagenet"]
    assert official.unverified == () and official.rectify["gamma"] == 10.0
    assert all(set(v) & {"released-config", "released-code", "released-base", "profile"}
               for v in official.sources.values())


@pytest.mark.parametrize("name,factor,classes", [("paper-cifar", 1.0, 10), ("paper-cifar100", 2.0, 100)])
def test_experiment_presets_are_read_from_the_nio_preset(name, factor, classes):
    p, cfg = NIO_PRESETS["paper-cifar"], PRESETS[name]
    r, t = p.rectify, p.training
    init = cfg.init
    assert init.rectify.model_dump(include=set(r)) == r and init.batch_size == p.batch_size
    assert (cfg.recipe.epochs, cfg.recipe.batch_size, cfg.recipe.lr, cfg.recipe.momentum, cfg.recipe.weight_decay) \
        == (t["epochs"], t["batch_size"], t["lr"], t["momentum"], t["weight_decay"])
    assert cfg.recipe.bn_weight_decay and cfg.data.num_classes == classes
    gammas = {m.name: (m.init or {}).get("rectify", {}).get("gamma") for m in cfg.models}
    assert gammas == {"resnet110_nobn": 4.0 * factor, "resnet110_bn": 5.0 * factor,
                      "wrn28_10_nobn": None, "wrn28_10_bn": None}


def test_a_preset_value_must_be_a_rectify_option():
    """NIO presets are checked against RectifyOptions: a misspelt name or a value out of range is refused."""
    from pydantic import ValidationError

    from initscore.experiments.config import _preset

    for rectify, needle in (({"itres": (5, ("audit",))}, "rectify.itres"), ({"lr": (-1.0, ("audit",))}, "rectify.lr")):
        with pytest.raises(ValidationError, match=needle):
            _preset(rectify, (64, ("audit",)), source="test")
