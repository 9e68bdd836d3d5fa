"""Fixtures shared by the test modules."""
import pytest
import torch


@pytest.fixture(scope="module")
def one_intra_op_thread():
    """Single-volume passes run faster on one thread than on two on a shared 2-core machine,
    where OpenMP threads spin-wait for each other; the setting is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
