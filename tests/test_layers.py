"""The house's floors (STYLE.md "Layers"): no import runs up a floor, checked by import-linter's contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The project's import-linter contract (``pyproject.toml``) checked on the package importable from ``cwd``."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("`lint-imports` not found: install the test extra (`pip install -e '.[test]'`).")
    env = None if env is None else {**env, "PATH": str(Path(exe).parent)}
    cmd = [exe, "--config", str(ROOT / "pyproject.toml"), "--no-cache"]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, env=env)


def test_no_import_runs_up_a_floor():
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "1 kept, 0 broken" in out.stdout


def test_the_contract_would_catch_an_upward_import(tmp_path):
    """The contract is live: a ground-floor module importing a model family breaks it."""
    import importlinter  # noqa: F401  (the test extra)

    src = tmp_path / "src"
    pkg = src / "perturbtools"
    shutil.copytree(ROOT / "src" / "perturbtools", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    with (pkg / "_keys.py").open("a") as fh:
        fh.write("\nfrom .tl import _baselines  # noqa\n")
    out = _lint_imports(tmp_path, env={"PYTHONPATH": str(src)})
    assert out.returncode != 0
    assert "perturbtools._keys is not allowed to import perturbtools.tl" in out.stdout
