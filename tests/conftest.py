from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import matplotlib
import pytest

import perturbtools as pt

matplotlib.use("agg")

_DATA_ENV = "PERTURBTOOLS_DATA_DIR"
_REQUIRE_ENV = "PERTURBTOOLS_REQUIRE_REALDATA"
#: comma-separated test folders: tools/mutation_score.py --mirror-tests runs only these (the mutated module's mirror)
_MUTATION_TESTS_ENV = "PERTURBTOOLS_MUTATION_TESTS"
# The README passes a relative folder (../shared/data); tutorials run their kernels in other folders, so the test
# session hands every child process the absolute path it means here.
if os.environ.get(_DATA_ENV):
    os.environ[_DATA_ENV] = str(Path(os.environ[_DATA_ENV]).expanduser().resolve())


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")
    parser.addoption("--internet-tests", action="store_true", default=False, help="run tests that download data")


def _real_data_dir() -> Path | None:
    env = os.environ.get(_DATA_ENV)
    if env and (Path(env) / "perturbench_devel" / "devel.h5ad").exists():
        return Path(env)
    return None


def _keep_mutation_tests(config, items) -> None:
    """Deselect the tests outside the folders named in ``PERTURBTOOLS_MUTATION_TESTS`` (when set)."""
    folders = [f for f in os.environ.get(_MUTATION_TESTS_ENV, "").split(",") if f]
    if not folders:
        return
    roots = [Path(config.rootpath, f).resolve() for f in folders]
    keep = [item for item in items if any(root in Path(item.path).resolve().parents for root in roots)]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_collection_modifyitems(config, items):
    _keep_mutation_tests(config, items)
    skip_slow = pytest.mark.skip(reason="needs --runslow")
    skip_net = pytest.mark.skip(reason="needs --internet-tests")
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    has_cuda = importlib.util.find_spec("torch") is not None and __import__("torch").cuda.is_available()
    data_dir = _real_data_dir()
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "internet" in item.keywords and not config.getoption("--internet-tests"):
            item.add_marker(skip_net)
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        if "realdata" in item.keywords and data_dir is None:
            if os.environ.get(_REQUIRE_ENV) == "1":
                msg = f"{_REQUIRE_ENV}=1 but {_DATA_ENV} does not point at the real data folder"
                raise pytest.UsageError(msg)
            item.add_marker(pytest.mark.skip(reason=f"set {_DATA_ENV} to the real data folder"))


@pytest.fixture
def dcor():
    """The ``dcor`` package as an independent cross-check, or ``None`` where it cannot run: not installed, or numba's
    JIT turned off (as mutmut does), under which dcor's kernels fail. By-hand references then stand alone."""
    if os.environ.get("NUMBA_DISABLE_JIT") == "1" or importlib.util.find_spec("dcor") is None:
        return None
    import dcor

    return dcor


@pytest.fixture
def adata():
    """600 cells x 60 genes, 6 singles + 3 doubles + control, log-normalised, seed-fixed."""
    return pt.data.synthetic(n_cells=600, n_genes=60, n_perturbations=6, n_doubles=3, rng=0)


@pytest.fixture
def labelled_adata(adata):
    pt.pp.deg_labels(adata, modality_key="perturbation_type")
    pt.pp.add_gene_embedding(adata, adata.uns["synthetic"]["gene_embedding"], key_added="gene_emb")
    return adata


@pytest.fixture
def relabelled(labelled_adata):
    """A copy of ``labelled_adata`` with the same labels under another key only: nothing is left under ``deg``.

    A call that ignored its ``labels_key=`` would look for ``deg`` and fail.
    """

    def under(key: str = "other"):
        a = labelled_adata.copy()
        pt.pp.deg_labels(a, modality_key="perturbation_type", key_added=key)
        del a.uns["deg"]
        for frame in (a.varm, a.var):
            for name in [k for k in frame if str(k).startswith("deg_")]:
                del frame[name]
        return a

    return under


@pytest.fixture(scope="session")
def norman():
    """Real Norman 2019 K562 CRISPRa subset with labels (read-only: copy before changing)."""
    a = pt.data.norman2019_subset()
    pt.pp.deg_labels(a, modality_key="perturbation_type")
    return a


@pytest.fixture(scope="session")
def papalexi():
    """Real Papalexi 2021 THP-1 knockouts, log-normalised, with labels (read-only)."""
    a = pt.data.papalexi2021_lowmoi()
    pt.pp.deg_labels(a, modality_key="perturbation_type")
    return a


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
