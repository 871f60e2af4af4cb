"""Fixtures only; what tests share besides fixtures (paths, tiny configs, --set lists) is in helpers.py."""
from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test (restored after): two OpenMP threads on a shared 2-core box spin-wait
    badly (10-100x slower); one is fastest. Modules opt in with ``pytestmark = usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


if os.environ.get("PYTEST_XDIST_WORKER"):
    # two xdist workers on two cores: one intra-op thread each, or OpenMP oversubscription slows CPU work ~10x
    torch.set_num_threads(1)
