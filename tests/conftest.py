"""Shared test fixtures: dtypes and tolerance-aware helpers come from ``nptfunc.testing``."""

import numpy as np
import pytest

DTYPES = [np.float32, np.float64]


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> type:
    return request.param


def torch_dtype(dtype: type):
    import torch

    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]


def pytest_configure(config: pytest.Config) -> None:
    """torch on one thread: its small kernels spin on a busy machine (BatchNorm1d: 40 ms a call on 2 threads
    under load, 0.9 ms on one); the tests compare values, not speed."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
