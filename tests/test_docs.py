"""The Sphinx docs build warning-free (-W), offline (no intersphinx inventories)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    env = {**os.environ, "PERTURBTOOLS_DOCS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(ROOT / "docs"), str(tmp_path / "html")],
                         capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    assert (tmp_path / "html" / "api.html").exists()
