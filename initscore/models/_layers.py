"""Torch layers shared by the CIFAR families (imported only by *_net.py modules)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from initscore.grad_samplers import register_grad_sampler


class ChannelBias(nn.Module):
    """A learnable per-channel bias, the no-BN stand-in for BatchNorm2d.

    The NIO paper (Appendix B.2) trains its no-BN networks with "a bias in place of
    BN": y[:, c] = x[:, c] + b[c], b initialized to zero (like BN's beta).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias.view(1, -1, *([1] * (x.dim() - 2)))

    def extra_repr(self) -> str:
        return str(self.bias.numel())


@register_grad_sampler(ChannelBias)
def _channel_bias_grad(mod: nn.Module, owned: frozenset[str], a: Tensor, o: Tensor, d: Tensor) -> dict[str, Tensor]:
    """g_n(b) = sum over positions of d_n (y = a + b broadcast over channels)."""
    dims = list(range(2, a.dim()))
    return {"bias": d.sum(dim=dims) if dims else d}


def norm2d(channels: int, bn: bool) -> nn.Module:
    """BatchNorm2d(channels) (weight 1, bias 0) or, with bn=False, ChannelBias(channels)."""
    if bn:
        m = nn.BatchNorm2d(channels)
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
        return m
    return ChannelBias(channels)


def kaiming_init_(module: nn.Module) -> None:
    """He et al. 2015 init used by the CIFAR families.

    Conv2d: kaiming_normal_(mode="fan_out", nonlinearity="relu"), i.e. N(0, 2/(k*k*C_out))
    as in torchvision's ResNet and the GradInit/NIO code; conv biases 0.
    Linear: PyTorch's default weight init (kaiming_uniform_, a=sqrt(5)), bias 0.
    BatchNorm: weight 1, bias 0. ChannelBias: 0.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def fixup_init_(net: nn.Module, block: type[nn.Module], branches: int) -> None:
    """Fixup (Zhang et al., ICLR 2019, Sec. 3) for residual networks with m = 2 convs per branch.

    He fan-out normal everywhere (:func:`kaiming_init_`), then in every ``block`` the branch's first conv
    (``conv1``) times branches^(-1/2) = L^(-1/(2m-2)) and its last conv (``conv2``) at 0; the classifier ``net.fc``
    (weight and bias) at 0. The stem and any 1x1 shortcut convs keep their He initialization; the blocks' scalar
    biases start at 0 and multipliers at 1 (their constructors' values).

    net: the network; block: the Fixup block class whose ``conv1``/``conv2`` form a branch; branches: L, the
    number of residual branches.
    """
    kaiming_init_(net)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, block):
                m.conv1.weight.mul_(branches ** -0.5)
                m.conv2.weight.zero_()
        net.fc.weight.zero_()
        net.fc.bias.zero_()
