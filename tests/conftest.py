"""Shared test fixtures."""
import pytest
import torch

from mer_lib.allocator import keep_large_buffers

# the tests run with the allocator settings of the project's own runs (mer_lib.allocator):
# this process and the kernels, Ray workers and command-line runs the tests start
keep_large_buffers()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests with one torch thread (tiny models: no OpenMP oversubscription)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def float64():
    """Run a test with float64 as torch's default dtype (the exact-equality contracts)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
