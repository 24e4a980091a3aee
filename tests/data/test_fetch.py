from __future__ import annotations

import functools
import hashlib
import http.server
import pickle
import threading

import pytest

import perturbtools as pt
from perturbtools.data._datasets import _load_split_pickle
from perturbtools.data._registry import DatasetFile


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "remote"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_download_verify_and_reuse(server, tmp_path, monkeypatch, adata):
    root, url = server
    adata.write_h5ad(root / "tiny.h5ad")
    digest = hashlib.sha256((root / "tiny.h5ad").read_bytes()).hexdigest()
    monkeypatch.setattr(pt.settings, "datasetdir", tmp_path / "cache")
    monkeypatch.setattr(pt.settings, "download", True)
    registry = {"tiny": DatasetFile("tinyset", "tiny.h5ad", url + "tiny.h5ad", digest, adata.shape)}
    path = pt.data.fetch("tiny", registry=registry)
    assert path == tmp_path / "cache" / "tinyset" / "tiny.h5ad"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    (root / "tiny.h5ad").unlink()  # second call must use the cache, not the server
    assert pt.data.fetch("tiny", registry=registry) == path


def test_bad_hash_and_missing(server, tmp_path, monkeypatch):
    root, url = server
    (root / "f.txt").write_text("hello")
    monkeypatch.setattr(pt.settings, "datasetdir", tmp_path / "cache")
    monkeypatch.setattr(pt.settings, "download", True)
    registry = {
        "bad": DatasetFile("d", "f.txt", url + "f.txt", "0" * 64),
        "nourl": DatasetFile("d", "g.txt", None, None),
    }
    with pytest.raises(ValueError, match=r"SHA256|hash"):
        pt.data.fetch("bad", registry=registry)
    with pytest.raises(FileNotFoundError, match="PERTURBTOOLS_DATA_DIR"):
        pt.data.fetch("nourl", registry=registry)
    with pytest.raises(KeyError, match="Unknown dataset"):
        pt.data.fetch("nope", registry=registry)


def test_local_file_with_wrong_hash(tmp_path, monkeypatch):
    monkeypatch.setattr(pt.settings, "datasetdir", tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("changed")
    with pytest.raises(OSError, match="sha256"):
        pt.data.fetch("x", registry={"x": DatasetFile("d", "f.txt", None, "0" * 64)})


def test_split_pickles_are_loaded_safely(tmp_path):
    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps({"train": {"A+ctrl"}, "test": {"B+C"}}))
    assert _load_split_pickle(good) == {"train": ["A+ctrl"], "test": ["B+C"]}

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"train": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="Refusing"):
        _load_split_pickle(bad)


def test_env_var_sets_datadir(monkeypatch, tmp_path):
    monkeypatch.setenv("PERTURBTOOLS_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(pt.settings, "_datasetdir", None)
    assert pt.settings.datasetdir == tmp_path


def test_relative_datadir_is_resolved_when_read(monkeypatch, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERTURBTOOLS_DATA_DIR", "data")
    monkeypatch.setattr(pt.settings, "_datasetdir", None)
    monkeypatch.setattr(pt.settings, "_env_dir", None)
    assert pt.settings.datasetdir == tmp_path / "data"
    monkeypatch.chdir(tmp_path / "elsewhere")  # a later change of directory does not move it
    assert pt.settings.datasetdir == tmp_path / "data"
    monkeypatch.setattr(pt.settings, "datasetdir", "../data")
    assert pt.settings.datasetdir == tmp_path / "data"


def test_configured_folder_without_the_file_does_not_download(server, monkeypatch, tmp_path):
    root, url = server
    (root / "f.txt").write_text("hello")
    monkeypatch.setattr(pt.settings, "datasetdir", tmp_path / "configured")
    registry = {"f": DatasetFile("d", "f.txt", url + "f.txt", None)}
    with pytest.raises(FileNotFoundError, match=r"configured data folder .*pt.settings.download = True"):
        pt.data.fetch("f", registry=registry)
    assert not (tmp_path / "configured" / "d" / "f.txt").exists()
