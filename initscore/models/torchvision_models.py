"""torchvision ImageNet architectures under a ``torchvision:`` prefix (torch-free declaration).

Built with ``weights=None`` (random torchvision default init; nothing is ever
downloaded). Pure-Python counts: the 1000-class count of torchvision's model minus
its 1000-way head plus the new head (and, for ViT, the position embedding resized to
(image_size / 16)^2 + 1 tokens). The tests compare them with the torch count.

  torchvision:resnet50  25,557,032 params (1000 classes); head fc 2048 -> classes
  torchvision:swin_t    28,288,354 params; head 768 -> classes
  torchvision:vit_b_16  86,567,656 params at 224 px; head 768 -> classes
"""
from __future__ import annotations

from initscore.models.registry import Arg, register_model

_INPUT = (3, 224, 224)
_TV_NUM_CLASSES = Arg("int", 1000, lo=1, hi=100_000, help="size of the classifier output")


def _head(d: int, num_classes: int) -> int:
    return d * num_classes + num_classes


def count_resnet50(num_classes: int = 1000) -> int:
    return 25_557_032 - _head(2048, 1000) + _head(2048, num_classes)


def count_swin_t(num_classes: int = 1000) -> int:
    return 28_288_354 - _head(768, 1000) + _head(768, num_classes)


def count_vit_b_16(num_classes: int = 1000, image_size: int = 224) -> int:
    tokens = (image_size // 16) ** 2 + 1
    return 86_567_656 - _head(768, 1000) + _head(768, num_classes) - 197 * 768 + tokens * 768


def _multiple_of_16(v: int) -> str | None:
    return None if v % 16 == 0 else "must be a multiple of the patch size 16"


@register_model(
    "torchvision:resnet50",
    family="torchvision",
    args={"num_classes": _TV_NUM_CLASSES},
    count_params=count_resnet50,
    input_shape=_INPUT,
)
def tv_resnet50(**kwargs):
    """torchvision ResNet-50 (He et al. 2016), weights=None."""
    from torchvision.models import resnet50

    return resnet50(weights=None, **kwargs)


@register_model(
    "torchvision:swin_t",
    family="torchvision",
    args={"num_classes": _TV_NUM_CLASSES},
    count_params=count_swin_t,
    input_shape=_INPUT,
)
def tv_swin_t(**kwargs):
    """torchvision Swin-T (Liu et al. 2021), weights=None; any input size (windows are padded)."""
    from torchvision.models import swin_t

    return swin_t(weights=None, **kwargs)


@register_model(
    "torchvision:vit_b_16",
    family="torchvision",
    args={
        "num_classes": _TV_NUM_CLASSES,
        "image_size": Arg("int", 224, lo=16, hi=1024, check=_multiple_of_16, help="input side; a multiple of 16"),
    },
    count_params=count_vit_b_16,
    input_shape=_INPUT,
)
def tv_vit_b_16(**kwargs):
    """torchvision ViT-B/16 (Dosovitskiy et al. 2021), weights=None; input must be image_size square."""
    from torchvision.models import vit_b_16

    return vit_b_16(weights=None, **kwargs)


