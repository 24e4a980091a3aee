"""Learning and few-shot curves: which perturbations each fit sees, and what each row reports (by hand)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

import perturbtools as pt
from perturbtools.metrics._evaluate import COUNT_COLUMNS, SUBTASK_METRICS, evaluate_predictions
from perturbtools.tl import FineTunable


@pytest.fixture(scope="module")
def lines():
    """Two synthetic 'cell lines' with the same genes."""
    src = pt.data.synthetic(n_cells=1500, n_genes=50, n_perturbations=12, rng=3)
    # the target has doubles: test folds then hold several unseen strata, and rows report the stratum "all"
    tgt = pt.data.synthetic(n_cells=1500, n_genes=50, n_perturbations=14, n_doubles=6, rng=4)
    tgt.var_names = src.var_names
    for a in (src, tgt):
        pt.pp.deg_labels(a)
    return src, tgt


class _Recorder(pt.tl.NonControlMean):
    """Non-control mean that records what every fit was given."""

    calls: ClassVar[list] = []

    def fit(self, perturbations=None, *, rng=0, **kwargs):
        type(self).calls.append({"train": None if perturbations is None else list(perturbations), "rng": rng, **kwargs})
        return super().fit(perturbations, rng=rng)


class _TunableMean(FineTunable, _Recorder):
    """Fine-tuning averages the pretrained mean with the target training mean; selects on validation like STAMP."""

    calls: ClassVar[list] = []
    inits: ClassVar[list] = []
    selects_on_validation: ClassVar[bool] = True

    def fit(self, perturbations=None, *, rng=0, warm_start=False, **kwargs):
        type(self).inits.append(dict(self.init_params_))
        before = self.mean_.copy() if warm_start else None
        super().fit(perturbations, rng=rng, warm_start=warm_start, **kwargs)
        if before is not None:
            self.mean_ = (before + self.mean_) / 2
        return self

    @classmethod
    def from_pretrained(cls, model, adata, **kwargs):
        new = cls(adata, **kwargs)
        new.mean_, new.is_fitted_ = model.mean_.copy(), True
        return new


def _seed_and_folds(perts, n_splits, rng=0):
    seed = int(np.random.default_rng(rng).integers(2**31))
    return seed, list(pt.pp.kfold_perturbations(perts, n_splits, rng=seed))


def _expected_row(preds, data, train, test):
    """A curve row by hand: per-perturbation means (counts left out) and the pooled metrics over all entries."""
    per, pooled = evaluate_predictions(preds, data, test, train=train)
    row = per.drop(columns=[c for c in COUNT_COLUMNS if c in per]).select_dtypes("number").mean()
    for mask, suffix in (("all", ""), ("top40", "_top40")):
        r = pooled[(pooled["stratum"] == "all") & (pooled["mask"] == mask)].iloc[0]
        row = pd.concat([row, pd.Series({f"pooled_{m}{suffix}": r[m] for m in SUBTASK_METRICS})])
    return row


def _assert_row(got: pd.Series, want: pd.Series):
    assert not {"n_de", "n_up", "n_down", "n_entries", "n_perturbations"} & set(got.index)
    np.testing.assert_allclose(got[want.index].to_numpy(float), want.to_numpy(float), rtol=1e-12, equal_nan=True)


def test_learning_curve_nested_training_sets_and_rows_by_hand(lines):
    a = lines[1]
    data = pt.tl.LabelledData.from_adata(a)
    perts = list(data.perturbations)
    seed, folds = _seed_and_folds(perts, 3)
    _Recorder.calls = []
    table = pt.bm.learning_curve(a, {"mean": _Recorder}, train_sizes=[6, 2, 6, 99], n_splits=3, show_progress_bar=False)
    # sizes sorted, duplicates dropped, larger than a fold's training set skipped; one fit per (fold, size)
    assert list(zip(table["fold"], table["n_train"], strict=True)) == [(f, n) for f in range(3) for n in (2, 6)]
    assert (table["model"] == "mean").all() and (table["seconds"] >= 0).all()
    for (fold, n), call in zip(zip(table["fold"], table["n_train"], strict=True), _Recorder.calls, strict=True):
        train_all, test = folds[fold]
        order = np.random.default_rng(seed + fold).permutation(len(train_all))
        train = [train_all[i] for i in order[:n]]  # nested: the size-2 set is a prefix of the size-6 one
        assert call == {"train": train, "rng": seed + fold}
        m = pt.tl.NonControlMean(a).fit(train)
        row = table[(table["fold"] == fold) & (table["n_train"] == n)].iloc[0]
        _assert_row(row, _expected_row(m.predict(test, inplace=False), data, train, test))
    assert "learning_curve" not in a.uns  # returned, not stored, by default
    b = a.copy()
    assert pt.bm.learning_curve(b, {"mean": _Recorder}, train_sizes=[2], n_splits=3, inplace=True) is None
    stored = b.uns["learning_curve"]
    assert stored["params"] == {"labels_key": "deg", "n_splits": 3, "seed": seed}
    assert list(stored["table"]["n_train"]) == [2, 2, 2]


def test_few_shot_protocol_and_rows_by_hand(lines):
    src, tgt = lines
    data = pt.tl.LabelledData.from_adata(tgt)
    perts = list(data.perturbations)
    seed, folds = _seed_and_folds(perts, 2)
    _TunableMean.calls, _Recorder.calls = [], []
    table = pt.bm.few_shot(
        src, tgt, (_TunableMean, {}, {"tag": "fit"}), shots=(3, 0, 99), n_splits=2,
        baselines={"mean": _Recorder}, show_progress_bar=False,
    )  # fmt: skip
    pretrain, *rest = _TunableMean.calls
    assert pretrain == {"train": None, "rng": seed, "warm_start": False, "tag": "fit"}  # every source perturbation
    source_mean = pt.tl.NonControlMean(src).fit().mean_
    expected_rows = []
    for fold in range(2):
        train_all, test = folds[fold]
        order = np.random.default_rng(seed + fold).permutation(len(train_all))
        train = [train_all[i] for i in order[:3]]
        # n shots train on all n: no validation hold-out; fine-tuning reuses the fit arguments by default
        assert rest.pop(0) == {"train": train, "rng": seed + fold, "warm_start": True, "val_perturbations": [],
                               "tag": "fit"}  # fmt: skip
        assert rest.pop(0) == {"train": train, "rng": seed + fold, "warm_start": False, "val_perturbations": [],
                               "tag": "fit"}  # fmt: skip
        assert _Recorder.calls.pop(0) == {"train": train, "rng": seed + fold}
        zero = pt.tl.NonControlMean(tgt).fit(train)  # a fitted model whose mean is then set by hand
        zero.mean_ = source_mean
        tuned = pt.tl.NonControlMean(tgt).fit(train)
        tuned.mean_ = (source_mean + tuned.mean_) / 2
        scratch = pt.tl.NonControlMean(tgt).fit(train)
        for strategy, n, model, fit_on in (("pretrained", 0, zero, []), ("pretrained", 3, tuned, train),
                                           ("scratch", 3, scratch, train), ("mean", 3, scratch, train)):  # fmt: skip
            expected_rows.append((strategy, fold, n))
            row = table[(table["strategy"] == strategy) & (table["fold"] == fold) & (table["n"] == n)]
            assert len(row) == 1
            _assert_row(row.iloc[0], _expected_row(model.predict(test, inplace=False), data, fit_on, test))
    assert not rest and not _Recorder.calls
    assert sorted(zip(table["strategy"], table["fold"], table["n"], strict=True)) == sorted(expected_rows)


def test_few_shot_finetune_kwargs_and_per_perturbation_rows(lines):
    src, tgt = lines
    _TunableMean.calls = []
    table, per = pt.bm.few_shot(
        src, tgt, (_TunableMean, {}, {"tag": "fit"}), shots=(2,), n_splits=2, finetune_kwargs={"tag": "tune"},
        source_perturbations=list(src.uns["deg"]["perturbations"][:5]), return_per_perturbation=True,
        show_progress_bar=False,
    )  # fmt: skip
    assert _TunableMean.calls[0]["train"] == list(src.uns["deg"]["perturbations"][:5])
    tags = [(c["warm_start"], c["tag"]) for c in _TunableMean.calls[1:]]
    assert tags == [(True, "tune"), (False, "fit")] * 2
    assert list(per.columns[:3]) == ["strategy", "fold", "n"]
    # each row is the mean of its perturbations' rows
    for (strategy, fold, n), group in per.groupby(["strategy", "fold", "n"]):
        row = table[(table["strategy"] == strategy) & (table["fold"] == fold) & (table["n"] == n)].iloc[0]
        assert row["pearson_delta"] == pytest.approx(group["pearson_delta"].mean(), rel=1e-12)
    assert per.groupby(["strategy", "n"])["perturbation"].nunique().eq(len(tgt.uns["deg"]["perturbations"])).all()


def test_few_shot_rejects_other_genes_and_models_that_cannot_fine_tune(lines):
    src, tgt = lines
    with pytest.raises(ValueError, match="same `var_names`"):
        pt.bm.few_shot(src, tgt[:, :40].copy(), _TunableMean, shots=(0,), show_progress_bar=False)
    with pytest.raises(TypeError, match="cannot be fine-tuned"):
        pt.bm.few_shot(src, tgt, pt.tl.NonControlMean, shots=(0,), show_progress_bar=False)


class _PlainTunable(_TunableMean):
    """A fine-tunable model that does not hold out validation perturbations."""

    calls: ClassVar[list] = []
    selects_on_validation: ClassVar[bool] = False


class _NoTraining(pt.tl.NonControlMean):
    """A reference line that predicts without target training (like ``SourceRanking``)."""

    needs_training: ClassVar[bool] = False

    def _fit(self, train, **kwargs):
        self.mean_ = self.data_.control_mean.copy()  # no change from control, whatever the training set


def test_curve_defaults_subsets_and_progress(lines, capsys, monkeypatch):
    """Five folds by default; ``perturbations`` restricts the folds; the progress bar is named and can be forced on."""
    src, tgt = lines
    perts = list(tgt.uns["deg"]["perturbations"])
    table = pt.bm.learning_curve(tgt, {"mean": pt.tl.NonControlMean}, train_sizes=[2], show_progress_bar=False)
    assert list(table["fold"]) == list(range(5))
    subset = perts[:9]
    seed, folds = _seed_and_folds(subset, 3)
    _Recorder.calls = []
    pt.bm.learning_curve(tgt, {"mean": _Recorder}, train_sizes=[5], n_splits=3, perturbations=subset,
                         show_progress_bar=False)  # fmt: skip
    for fold, call in enumerate(_Recorder.calls):
        order = np.random.default_rng(seed + fold).permutation(len(folds[fold][0]))
        assert call["train"] == [folds[fold][0][i] for i in order[:5]]
    _TunableMean.calls = []
    table = pt.bm.few_shot(src, tgt, _TunableMean, shots=(0,), show_progress_bar=False)
    assert list(table["fold"]) == list(range(5))
    monkeypatch.setattr(pt.settings, "progress_bar", False)  # the argument overrides the setting
    capsys.readouterr()
    pt.bm.learning_curve(tgt, {"mean": pt.tl.NonControlMean}, train_sizes=[2], n_splits=2, show_progress_bar=True)
    assert "learning curve: 100%" in capsys.readouterr().err
    pt.bm.few_shot(src, tgt, _TunableMean, shots=(0,), n_splits=2, show_progress_bar=True)
    assert "few-shot: 100%" in capsys.readouterr().err


def test_learning_curve_key_added_none(lines):
    a = lines[1]
    with pytest.raises(ValueError, match=r"`learning_curve\(inplace=True\)` needs a `key_added`"):
        pt.bm.learning_curve(a, {"mean": pt.tl.NonControlMean}, train_sizes=[2], key_added=None, inplace=True)
    with pytest.warns(FutureWarning, match=r"`learning_curve\(key_added=None\)` is deprecated"):
        pt.bm.learning_curve(a, {"mean": pt.tl.NonControlMean}, train_sizes=[2], n_splits=2, key_added=None,
                             show_progress_bar=False)  # fmt: skip


def test_few_shot_init_arguments_plain_fine_tuning_and_untrained_baselines(lines):
    """Pretraining gets the init arguments; a model without validation selection gets no ``val_perturbations``; a
    baseline that needs no target training is scored at n = 0 too; the per-perturbation table is labelled."""
    src, tgt = lines
    _PlainTunable.calls, _PlainTunable.inits = [], []
    table, per = pt.bm.few_shot(
        src, tgt, (_PlainTunable, {"note": "init"}), shots=(0, 2), n_splits=2,
        baselines={"untrained": _NoTraining, "mean": pt.tl.NonControlMean}, return_per_perturbation=True,
        show_progress_bar=False,
    )  # fmt: skip
    assert _PlainTunable.inits[0] == {"note": "init"}
    assert all("val_perturbations" not in c for c in _PlainTunable.calls)
    keys = set(zip(table["strategy"], table["fold"], table["n"], strict=True))
    assert keys == {(s, f, n) for f in range(2) for s, n in
                    [("pretrained", 0), ("untrained", 0), ("pretrained", 2), ("scratch", 2), ("untrained", 2),
                     ("mean", 2)]}  # fmt: skip
    assert set(zip(per["strategy"], per["fold"], per["n"], strict=True)) == keys
    pd.testing.assert_index_equal(per.index, pd.RangeIndex(len(per)))
    # the unseen stratum of each test perturbation, against the n training perturbations of its row
    data = pt.tl.LabelledData.from_adata(tgt)
    seed, folds = _seed_and_folds(list(data.perturbations), 2)
    for (strategy, fold, n), group in per.groupby(["strategy", "fold", "n"]):
        train_all, _ = folds[fold]
        order = np.random.default_rng(seed + fold).permutation(len(train_all))
        train = [train_all[i] for i in order[:n]]
        want = pt.pp.unseen_labels(group["perturbation"], train).astype(str).to_numpy()
        np.testing.assert_array_equal(group["unseen"].to_numpy(), want, err_msg=str((strategy, fold, n)))
