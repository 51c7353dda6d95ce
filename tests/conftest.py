"""Shared test set-up: offline, seeded, and a `shared_data` fixture that skips when ../shared is absent."""

import os
import random
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass


@pytest.fixture
def shared_data() -> Path:
    """The project's data folder (STIC_DATA, default ../shared/data); skip if it is not there."""
    from stic.paths import data_dir

    path = data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data folder not found at {path} (set STIC_DATA to run this test)")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Coding runs on one thread; tiny models are also fastest so on a busy machine."""
    from stic.threads import fixed_threads

    with fixed_threads(1):
        yield


@pytest.fixture(scope="module")
def lm():
    """A tiny random Llama (tests/tiny_lm.py), shared by a module's tests."""
    from tiny_lm import tiny_lm

    return tiny_lm(seed=0)
