"""One switch for every speed path of the engine, with the plain reference path one call away.

The engine computes the same numbers two ways: a plain path (``torch.func`` per-sample gradients, one
forward/backward per sub-batch segment, torch's own convolution and BatchNorm autograd, the default memory
layout) and faster routes that must agree with it:

  hooks        per-sample gradients from one batched backward (:mod:`initscore.hook_grads`)
  segments     all sub-batch segments from one forward/backward (:mod:`initscore.segments`)
  fast_conv    a convolution with a hand-written double backward for NIO (:mod:`initscore.fast_conv`)
  bn_kernel    torch's BatchNorm autograd for first-order batch statistics, and its instance-norm kernel for
               per-sample statistics on the hook route (:class:`initscore.bn.StatBN`)
  layout       channels-last image batches on the CPU (:func:`initscore.scores.fast_layout`)

Which of them runs is decided in one place, :func:`initscore.grad_plan.decide`, the only reader of
:func:`enabled`; so ``set_enabled(False)`` (or the environment variable ``INITSCORE_FAST_PATHS=0`` at import,
or ``with plain(): ...``) runs the reference path everywhere; ``tests/engine/test_fastpath.py`` checks that both
give the same numbers. On by default.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

_enabled = os.environ.get("INITSCORE_FAST_PATHS", "1").strip().lower() not in ("0", "false", "no", "off")


def enabled() -> bool:
    """True when the engine may take its fast paths (the default)."""
    return _enabled


def set_enabled(on: bool) -> None:
    """Turn every fast path on or off for this process."""
    global _enabled
    _enabled = bool(on)


@contextmanager
def plain() -> Iterator[None]:
    """Run the block on the plain reference path, then restore the previous setting."""
    before = _enabled
    set_enabled(False)
    try:
        yield
    finally:
        set_enabled(before)
