import os

import pytest
import torch

torch.set_num_threads(1)  # tests use tiny models; one thread avoids oversubscribing small CI machines

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)


# Digits models trained once per test session and shared (read-only) by the foundation tests.
DIGITS = dict(dataset="digits", batch_size=32, pretrain_epochs=15, eps_eval=0.2, test_size=200)  # default evaluation


@pytest.fixture(scope="session")
def digits_trials(tmp_path_factory):
    """{'standard': folder, 'adversarial': folder} of saved digits trials (record.json, model.pt)."""
    from rcsweep import TrialConfig, run_trial

    out = {}
    for mode in ("standard", "adversarial"):
        folder = tmp_path_factory.mktemp(f"digits_{mode}")
        run_trial(TrialConfig(pretrain=mode, **DIGITS), folder, device="cpu")
        out[mode] = folder
    return out
