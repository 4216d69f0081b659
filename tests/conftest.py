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


@pytest.fixture
def fail_training(monkeypatch):
    """``fail_training("a2m2e")``: the runner's training of that variant raises a TrainingError
    (NaN loss); every other variant trains as usual."""
    import mer_lib.runner as runner_module
    from mer_lib.errors import TrainingError

    real = runner_module.get_trained

    def fail(variant_to_fail: str) -> None:
        def failing(variant, seed, *args, **kwargs):
            if variant == variant_to_fail:
                raise TrainingError(f"training {variant} seed {seed}: the loss became nan at epoch 1, batch 1 of 4")
            return real(variant, seed, *args, **kwargs)

        monkeypatch.setattr(runner_module, "get_trained", failing)   # where the runner looks it up
    return fail
