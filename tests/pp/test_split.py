from __future__ import annotations

import pytest

import perturbtools as pt


def test_split_disjoint_and_seeded(labelled_adata):
    pt.pp.split_perturbations(labelled_adata, test_size=0.3, val_size=0.2, rng=1)
    s = labelled_adata.uns["split"]
    sets = [set(s[k]) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert set.union(*sets) == set(labelled_adata.uns["deg"]["perturbations"])
    again = pt.pp.split_perturbations(labelled_adata, test_size=0.3, val_size=0.2, rng=1, copy=True)
    assert again.uns["split"]["test"] == s["test"]
    with pytest.raises(ValueError, match="no training"):
        pt.pp.split_perturbations(labelled_adata, test_size=0.6, val_size=0.5)


def test_kfold_covers_each_once():
    perts = [f"P{i}" for i in range(11)]
    tested = [p for _, test in pt.pp.kfold_perturbations(perts, 4, rng=0) for p in test]
    assert sorted(tested) == sorted(perts)
    for train, test in pt.pp.kfold_perturbations(perts, 4, rng=0):
        assert not set(train) & set(test)


def test_unseen_labels():
    labels = pt.pp.unseen_labels(["A", "C", "A+B", "A+C", "C+D"], train=["A", "B+E"])
    assert labels.to_dict() == {
        "A": "0/1 unseen",
        "C": "1/1 unseen",
        "A+B": "0/2 unseen",
        "A+C": "1/2 unseen",
        "C+D": "2/2 unseen",
    }


def test_split_defaults_sizes_params_and_store(labelled_adata):
    a = labelled_adata
    perts = a.uns["deg"]["perturbations"]
    assert pt.pp.split_perturbations(a) is None  # written in place
    s = a.uns["split"]
    n = len(perts)
    assert (len(s["test"]), len(s["val"])) == (round(0.2 * n), round(0.1 * n))  # defaults: 20% test, 10% val
    assert len(s["train"]) == n - len(s["test"]) - len(s["val"])
    assert dict(s["params"]) == {"labels_key": "deg", "test_size": 0.2, "val_size": 0.1, "rng": 0}
    with pytest.raises(KeyError, match=r"uns\['nope'\].*deg_labels"):
        pt.pp.split_perturbations(a, labels_key="nope")


def test_kfold_default_five_folds_and_leave_one_out():
    perts = [f"P{i}" for i in range(12)]
    folds = list(pt.pp.kfold_perturbations(perts, rng=0))
    assert len(folds) == 5
    assert sorted(len(t) for _, t in folds) == [2, 2, 2, 3, 3]
    loo = list(pt.pp.kfold_perturbations(perts, 12, rng=0))  # as many folds as perturbations: leave one out
    assert all(len(t) == 1 for _, t in loo)
    with pytest.raises(ValueError, match="n_splits"):
        list(pt.pp.kfold_perturbations(perts, 13))


def test_split_boundaries_generator_seed_and_sorted_sets(labelled_adata):
    import numpy as np

    a = labelled_adata
    n = len(a.uns["deg"]["perturbations"])  # 9
    one_left = pt.pp.split_perturbations(a, test_size=5 / n, val_size=3 / n, copy=True).uns["split"]
    assert (len(one_left["test"]), len(one_left["val"]), len(one_left["train"])) == (5, 3, 1)
    with pytest.raises(ValueError, match="no training"):  # test + val == all perturbations
        pt.pp.split_perturbations(a, test_size=6 / n, val_size=3 / n)
    s = pt.pp.split_perturbations(a, rng=np.random.default_rng(3), copy=True).uns["split"]
    assert s["params"]["rng"] is None  # a generator is not a reproducible seed: not recorded as one
    for name in ("train", "val", "test"):
        assert s[name] == sorted(s[name])


def test_kfold_needs_two_folds_and_keeps_input_order():
    perts = [f"P{i}" for i in "9382716450"]
    with pytest.raises(ValueError, match="n_splits"):
        list(pt.pp.kfold_perturbations(perts, 1))
    for train, test in pt.pp.kfold_perturbations(perts, 3, rng=0):
        assert train == [p for p in perts if p in train] and test == [p for p in perts if p in test]


def test_unseen_labels_with_another_control_and_delimiter():
    """Labels such as ``A_safe`` with control ``safe``: the control token is no gene; a categorical ``unseen``."""
    labels = pt.pp.unseen_labels(["A_safe", "B", "A_B", "safe"], train=["B_safe"], control="safe", delimiter="_")
    assert labels.name == "unseen" and labels.dtype == "category"
    assert labels.astype(str).to_dict() == {"A_safe": "1/1 unseen", "B": "0/1 unseen", "A_B": "1/2 unseen",
                                            "safe": "0/0 unseen"}  # fmt: skip


def test_kfold_default_seed_is_zero():
    perts = [f"P{i}" for i in range(10)]
    default = list(pt.pp.kfold_perturbations(perts))
    assert default == list(pt.pp.kfold_perturbations(perts, rng=0))
    assert default != list(pt.pp.kfold_perturbations(perts, rng=1))
