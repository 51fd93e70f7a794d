"""The layer contract (``.importlinter``: layers that only point down, no Ray below the sweep layer,
no import cycles between sibling modules) holds for this tree, and a deliberate upward import
breaks it: ``lint-imports`` then exits non-zero and names the contract, so CI (``.ci/run``) fails."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")  # the dev extra installs it

ROOT = Path(__file__).resolve().parent.parent
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the packages in ``tree`` (first on the path, so an installed copy elsewhere
    is not what gets checked), with ``tree/.importlinter``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache", "--no-logo"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=120)


def lint_with_line_added(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """``lint-imports`` on a copy of this tree in ``tmp_path`` whose ``module`` (a path) ends with ``line``."""
    for name in ("rcsweep", "analysis"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}\n")
    return lint_imports(tmp_path)


def test_the_contract_holds():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("rcsweep layers point down", "only the sweep layer imports Ray",
                 "no import cycles between sibling modules"):
        assert f"{name} KEPT" in r.stdout


def test_an_upward_import_breaks_it(tmp_path):
    r = lint_with_line_added(tmp_path, "rcsweep/train.py", "import analysis.pareto  # deliberate: a stage reaching up")
    assert r.returncode != 0
    assert "rcsweep layers point down BROKEN" in r.stdout
    assert "rcsweep.train -> analysis.pareto" in r.stdout


def test_ray_below_the_sweep_layer_breaks_it(tmp_path):
    r = lint_with_line_added(tmp_path, "rcsweep/evaluate/__init__.py", "import ray  # deliberate: a core stage importing Ray")
    assert r.returncode != 0
    assert "only the sweep layer imports Ray BROKEN" in r.stdout
