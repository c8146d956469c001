"""Engine tests: every test starts from the same torch seed."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # engine_helpers


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
