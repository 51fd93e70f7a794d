"""benchmarks/gpu_check.py: its data writers give back what rcsweep's loaders read, and its smoke
mode runs every stage end to end on the CPU with Ray, Optuna and Torch-Pruning unimportable, as on
the bare GPU machine it is written for."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402

# stands in for a machine without these packages: importing one fails as if it were not installed
BLOCKER = textwrap.dedent('''
    import sys

    class _NotInstalled:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("ray", "optuna", "torch_pruning"):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, _NotInstalled())
''')


def test_the_cut_datasets_read_back_as_written(tmp_path):
    from rcsweep.data import read_cifar_bin, read_idx

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8)
    gpu_check.write_idx_gz(tmp_path / "x.gz", images)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), images)
    x, y = rng.integers(0, 256, (7, 3, 32, 32)).astype(np.uint8), rng.integers(0, 10, 7)
    gpu_check.write_cifar_bin(tmp_path / "c.bin", x, y)
    xr, yr = read_cifar_bin(tmp_path / "c.bin")
    assert np.array_equal(xr, x) and np.array_equal(yr, y)


@pytest.mark.slow
def test_smoke_mode_runs_every_stage_without_ray_optuna_or_torch_pruning(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)])}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=1500, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    read = lambda name: json.loads((out / name).read_text())  # noqa: E731
    env_info = read("0_env.json")
    assert not (env_info["has_ray"] or env_info["has_optuna"] or env_info["has_torch_pruning"])
    assert set(read("summary.json")) == {"tests", "pgd", "concurrent", "cifar"}
    tests = read("1_tests.json")
    assert tests["ok"] and ("skipped" in tests["summary"] or "passed" in tests["summary"])
    pgd = read("2_pgd.json")
    assert {c["model"] for c in pgd["cases"]} == {"fmnist_net", "resnet18"}
    assert {c["bf16"] for c in pgd["cases"]} == {False, True} and all(c["ratio"] > 0 for c in pgd["cases"])
    concurrent = read("3_concurrent.json")
    assert concurrent["trials_finished"] == 4 and concurrent["trials_per_hour"] > 0
    assert all(t["device"] == "cpu" and t["peak_gpu_memory_bytes"] is None for t in concurrent["trials"])
    cifar = read("4_cifar.json")
    assert cifar["ok"] and cifar["cells_run"] >= 2 and not cifar["cells_failed"]
    assert cifar["cells_skipped"] and all("torch_pruning" in c["skipped"] for c in cifar["cells_skipped"])
