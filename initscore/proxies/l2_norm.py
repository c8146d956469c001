"""l2_norm (NASLib ``l2_norm``): sum over Conv/Linear layers of the Frobenius norm of the weight tensor.

    l2_norm = sum_layers ||W_layer||_2        (float64 accumulation)

Source: NASLib naslib/predictors/utils/pruners/measures/l2_norm.py (``get_layer_metric_array`` of
``l.weight.norm()`` over Conv2d/Linear layers, summed by its caller). Difference: Conv1d/Conv3d
count too (NASLib's layer filter is Conv2d/Linear), which changes nothing on 2-d image models.
"""
from __future__ import annotations

import torch
from torch import nn

from initscore.proxies.common import finite, weight_layers


def l2_norm(model: nn.Module) -> float:
    with torch.no_grad():
        return finite("l2_norm", sum(float(m.weight.double().norm()) for _, m in weight_layers(model)))


def l2_norm_group(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names, *, chunks: int = 1) -> dict[str, float]:
    return {"l2_norm": l2_norm(model)}
