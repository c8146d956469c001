"""profile="official" against tests/engine/official_reference.py (a restatement of the authors' released code),
split="cover", bn="shared", and the option checks. ResNet-20 on real CIFAR-10 images (the shared data); the score
tests on their central 16x16 pixels (the agreement under test does not depend on the image size; a quarter of the
work), the rectify steps on 16 whole images."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from initscore.errors import OptionsError
from initscore.models import create
from initscore.nio import rectify
from initscore.scores import batch_splits, gradcosine

from official_reference import official_scores, official_steps, slices

CIFAR = Path("/work/shared/data/cifar10_jpeg/cifar10_test_jpegbytes.npz")


def _cifar(n: int, seed: int = 0, crop: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    if not CIFAR.exists():
        pytest.skip("shared CIFAR-10 data not present")
    from PIL import Image

    z = np.load(CIFAR)
    jb, off, labels = z["jpeg"], z["offsets"], z["y"]
    idx = np.random.default_rng(seed).choice(len(labels), n, replace=False)
    imgs = np.stack([np.asarray(Image.open(io.BytesIO(jb[off[i]:off[i + 1]].tobytes())).convert("RGB")) for i in idx])
    x = torch.tensor(imgs, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    lo = (x.shape[-1] - crop) // 2
    x = x[:, :, lo:lo + crop, lo:lo + crop]
    x = (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)
    return x.contiguous(), torch.tensor(labels[idx], dtype=torch.long)


@pytest.fixture(scope="module")
def data():
    return _cifar(64)


@pytest.fixture(scope="module")
def full_images():
    return _cifar(64, crop=32)


def test_splits_cover_every_sample_and_official_matches_its_restatement():
    for B in (7, 32, 64, 100, 128, 256):
        for D in (2, 3, 4, 8):
            for r in (0.0, 0.2, 0.5, 0.6, 0.9):
                if D > B:
                    continue
                cover = batch_splits(B, D, r, "cover")
                assert cover[0][0] == 0 and cover[-1][1] == B
                assert len({e - s for s, e in cover}) == 1  # equal lengths
                used = set().union(*(range(s, e) for s, e in cover))
                assert used == set(range(B))
                try:
                    off = batch_splits(B, D, r, "official")
                except OptionsError:
                    continue
                assert off == slices(B, D, r)
    # the paper's Eq. 7 drops samples for D > 2 (issue #25's examples); cover does not
    assert batch_splits(64, 4, 0.2)[-1][1] == 58 and batch_splits(128, 4, 0.6)[-1][1] == 84
    assert batch_splits(128, 2, 0.6, "cover") == [(0, 92), (36, 128)]
    with pytest.raises(OptionsError, match="split"):
        batch_splits(64, 2, 0.2, "halves")


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("D,r", [(4, 0.2), (2, 0.6)])
def test_official_scores_match_the_restated_released_code(data, bn, D, r):
    x, y = data
    torch.manual_seed(1)
    model = create("resnet20", bn=bn)
    ref = official_scores(model, x, y, D, r)
    s = gradcosine(model, (x, y), mode="batch", sub_batches=D, overlap=r, profile="official")
    assert s.bn == ("shared" if bn else None) and s.n == D
    for k in ("gc", "gn", "g_max"):
        assert getattr(s, k) == pytest.approx(ref[k], rel=1e-4), k
    # and the paper profile on the same batch is a different number (diagonal included, Eq. 7, all tensors)
    paper = gradcosine(model, (x, y), mode="batch", sub_batches=D, overlap=r)
    assert abs(paper.gc - s.gc) > 1e-3


def test_shared_bn_differs_from_per_sub_batch_statistics(data):
    x, y = data
    model = create("resnet20", bn=True)
    shared = gradcosine(model, (x, y), mode="batch", sub_batches=4, overlap=0.2, bn="shared", split="official")
    own = gradcosine(model, (x, y), mode="batch", sub_batches=4, overlap=0.2, bn="batch", split="official")
    assert shared.bn == "shared" and own.bn == "batch"
    assert abs(shared.gn - own.gn) > 1e-4 * own.gn


@pytest.mark.parametrize("bn,gamma,target", [(False, 1e6, "gc_gn_sqrt"), (True, 1e6, "gv_gn"),
                                             (False, 0.0 + 1e-9, "gc"), (True, None, "gc_gn")])
def test_rectify_steps_match_the_restated_rescale_adam(full_images, bn, gamma, target):
    """float64: equal to 1e-9. float32 only to 1e-4 of each tensor's largest entry: Adam divides by sqrt(v), so
    float32 rounding of near-zero gradients moves a step by a visible fraction (4e-5 on BN weights of ~1 on an
    AVX-512 CPU, where float64 agrees to 3e-13)."""
    x, y = full_images
    x, y = x[:16], y[:16]
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        torch.manual_seed(2)
        model = create("resnet20", bn=bn).to(dtype)
        xd = x.to(dtype)
        D, r, steps, lr = 4, 0.2, 3, 0.003
        g = gamma
        if g is None:  # a bound between the branches: GN of the first step, so the steps switch branch
            g = official_scores(model, xd, y, D, r)["gn"] * 1.0001
        want, branches = official_steps(model, xd, y, D=D, r=r, gamma=g, target=target, steps=steps, lr=lr)
        res = rectify(model, (xd, y), iters=steps, lr=lr, gamma=g, sub_batches=D, overlap=r, profile="official",
                      objective=target, batch_size=16)
        assert [h["constrained"] for h in res.history] == branches
        for k, v in want.items():
            got = res.state_dict[k]
            if v.is_floating_point():
                assert got.dtype == dtype, k
                torch.testing.assert_close(got, v, rtol=tol, atol=tol * float(v.abs().max()) + 1e-12, msg=f"{dtype} {k}")
    if not bn:  # ChannelBias biases are all zero: unscalable, as in the released code (zero norm is skipped)
        assert all(res.scales[n] == 1.0 for n in res.unscalable)


def test_official_clamps_biases_at_zero_and_weights_at_min_scale():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                m.bias.normal_()
    x, y = torch.randn(16, 12), torch.randint(0, 3, (16,))
    # gamma tiny: every step lowers GN, pushing all scales down with lr 1
    res = rectify(net, (x, y), iters=6, lr=1.0, gamma=1e-9, sub_batches=2, overlap=0.0, profile="official",
                  batch_size=16)
    w = [v for n, v in res.scales.items() if n.endswith("weight")]
    b = [v for n, v in res.scales.items() if n.endswith("bias")]
    assert min(w) >= 0.01 - 1e-8 and min(b) >= 0.0
    assert min(b) < 0.01  # biases may go below the weights' clamp


def test_option_errors():
    x, y = torch.randn(8, 3, 4, 4), torch.randint(0, 3, (8,))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    with pytest.raises(OptionsError, match="batch mode only"):
        gradcosine(net, (x, y), mode="sample", profile="official")
    with pytest.raises(OptionsError, match="profile"):
        gradcosine(net, (x, y), mode="batch", profile="released")
    with pytest.raises(OptionsError, match="split"):
        gradcosine(net, (x, y), mode="batch", split="even")
    with pytest.raises(OptionsError, match="shared"):
        gradcosine(net, (x, y), mode="sample", bn="shared")
    with pytest.raises(OptionsError, match="objective"):
        rectify(net, (x, y), iters=1, objective="gc_gn")
    with pytest.raises(OptionsError, match="objective"):
        rectify(net, (x, y), iters=1, profile="official", objective="gc+gn")
    with pytest.raises(OptionsError, match="profile"):
        rectify(net, (x, y), iters=1, profile="official", method="gradinit")
    with pytest.raises(OptionsError, match="Conv2d/Linear/LayerNorm"):
        gradcosine(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Bilinear(48, 48, 3)) if False else
                   _NoLayers(), (x, y), mode="batch", profile="official")


class _NoLayers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(48, 3))

    def forward(self, x):
        return x.flatten(1) @ self.w


def test_batch_mode_overlap_defaults_agree():
    """gradcosine and rectify take the same batch-mode overlap when none is given (0.6, paper profile)."""
    from initscore.contract import RectifyOptions, ScoreOptions
    from initscore.scores import DEFAULT_OVERLAP

    x, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    a = gradcosine(net, (x, y), mode="batch")
    b = gradcosine(net, (x, y), mode="batch", overlap=DEFAULT_OVERLAP["paper"])
    assert a == b and DEFAULT_OVERLAP["paper"] == 0.6
    assert ScoreOptions().overlap is None and RectifyOptions().overlap is None  # rectify's options are these


def test_named_presets_hold_the_sources_values_and_run():
    from initscore.experiments.config import NIO_PRESETS, PRESETS

    off = NIO_PRESETS["official-imagenet"].rectify
    assert (off["profile"], off["lr"], off["sub_batches"], off["overlap"], off["gamma"], off["objective"],
            off["optimizer"], off["bn"]) == ("official", 3e-3, 4, 0.2, 10.0, "gc_gn_sqrt", "rescale_adam", "shared")
    assert NIO_PRESETS["official-imagenet"].batch_size == 64 and NIO_PRESETS["paper-imagenet"].batch_size == 64
    cifar = PRESETS["paper-cifar"]
    assert cifar.recipe.epochs == 500 and cifar.recipe.batch_size == 128 and cifar.recipe.bn_weight_decay
    assert {m.name: (m.init or {}).get("rectify", {}).get("gamma") for m in cifar.models}["resnet110_nobn"] == 4.0
    assert {m.name: (m.init or {}).get("rectify", {}).get("gamma") for m in cifar.models}["resnet110_bn"] == 5.0
    c100 = {m.name: (m.init or {}).get("rectify", {}).get("gamma") for m in PRESETS["paper-cifar100"].models}
    assert c100["resnet110_nobn"] == 8.0 and c100["resnet110_bn"] == 10.0
    assert NIO_PRESETS["paper-cifar"].kwargs_for("resnet110", False)["gamma"] == 4.0
    # every preset's settings are accepted by the engine
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    for name, p in NIO_PRESETS.items():
        x, y = torch.randn(p.batch_size, 3, 8, 8), torch.randint(0, 3, (p.batch_size,))
        kw = {**p.kwargs_for("net", True), "iters": 1}
        r = rectify(net, (x, y), batch_size=p.batch_size, **kw)
        assert len(r.history) == 1, name
