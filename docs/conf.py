"""Sphinx configuration (scverse template, trimmed)."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from importlib.metadata import version as _package_version
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

project = "perturbtools"
author = "perturbtools developers"
copyright = f"{datetime.now():%Y}, {author}"
release = version = _package_version("perturbtools")

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx_autodoc_typehints",
    "sphinx_copybutton",
]
autosummary_generate = True
autodoc_member_order = "groupwise"
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
typehints_defaults = "comma"
myst_enable_extensions = ["dollarmath", "colon_fence"]
nb_execution_mode = "off"  # tutorials are committed with outputs; the test suite executes them
nitpicky = False
templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
html_theme = "sphinx_book_theme"
html_title = "perturbtools"
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "pandas": ("https://pandas.pydata.org/pandas-docs/stable/", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "matplotlib": ("https://matplotlib.org/stable/", None),
    "torch": ("https://pytorch.org/docs/stable/", None),
    "scvi-tools": ("https://docs.scvi-tools.org/en/stable/", None),
}
intersphinx_disabled_reftypes = ["*"]
if os.environ.get("PERTURBTOOLS_DOCS_OFFLINE"):  # no network (CI sandboxes): skip fetching inventories
    intersphinx_mapping = {}
suppress_warnings = ["intersphinx.external", "config.cache", "misc.highlighting_failure", "mystnb.unknown_mime_type"]


def _generate_benchmark_page(app) -> None:
    from _benchmark_page import write_page

    write_page(HERE.parent / "benchmarks" / "results", HERE / "benchmarks.md")


def setup(app):  # noqa: D103
    app.connect("builder-inited", _generate_benchmark_page)
