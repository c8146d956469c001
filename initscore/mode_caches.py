"""Modules that keep a parameter-derived tensor between forwards in eval mode, on the engine's private copies (torch).

The pattern (timm 1.0: the attention of LeViT, EfficientFormer, EfficientFormerV2, EfficientViT-MSRA and
TinyViT): in eval mode a module computes ``attention_biases[:, attention_bias_idxs]`` on its first forward,
keeps it in a dict and reuses it until its ``train()`` override (or ``_apply``) drops it. The engine runs a
private copy many times with other tensors in place of the parameters (``torch.func.functional_call``, NIO's
scaled tensors): a kept tensor belongs to an earlier call -- earlier values, no gradient path to the tensors
now given, or a tensor of a ``vmap``/``grad`` level that has ended.

A module whose class overrides ``nn.Module.train`` is taken to follow that protocol: ``train(mode)`` with its
current mode drops whatever it keeps. :func:`refresh_each_forward` runs that call before and after every
forward of such a module of the copy (restoring the train/eval flags of the module and its descendants), so
every forward derives the tensor from the parameters it is given, and nothing outlives the call. Any other
behaviour of the module, its eval mode included, is unchanged. :func:`deepcopy` is ``copy.deepcopy`` without
that state (a kept tensor with a gradient history cannot be deep-copied: a caller's grad-enabled eval forward
leaves one).
"""
from __future__ import annotations

import copy
from typing import Any

from torch import nn


def keeps_mode_state(m: nn.Module) -> bool:
    """True when ``type(m)`` overrides ``nn.Module.train`` (the sign of state dropped on a mode change)."""
    return type(m).train is not nn.Module.train


def _drop_kept_state(m: nn.Module, *_: Any) -> None:
    """Call ``m.train(m.training)`` (the module's own way to drop what it keeps), flags restored."""
    flags = [(d, d.training) for d in m.modules()]
    m.train(m.training)
    for d, flag in flags:
        d.training = flag


def refresh_each_forward(net: nn.Module) -> int:
    """On every module of ``net`` that keeps mode state, drop it before and after each of its forwards.

    ``net`` must be a private copy whose hook dicts are its own (:func:`initscore.bn.tree_copy`): the hooks
    are registered on it. Returns the number of such modules.
    """
    found = [m for m in net.modules() if keeps_mode_state(m)]
    for m in found:
        m.register_forward_pre_hook(_drop_kept_state)
        m.register_forward_hook(_drop_kept_state, always_call=True)
    return len(found)


def deepcopy(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)`` of a tree copy whose modules have dropped their kept mode state first
    (``model`` itself is not touched)."""
    from initscore.bn import tree_copy

    net = tree_copy(model)
    for m in net.modules():
        if keeps_mode_state(m):
            _drop_kept_state(m)
    return copy.deepcopy(net)
