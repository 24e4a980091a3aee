from __future__ import annotations

import pytest

import perturbtools as pt


@pytest.mark.parametrize(
    ("label", "genes"),
    [("A", ("A",)), ("A+B", ("A", "B")), ("A+ctrl", ("A",)), ("ctrl+A", ("A",)), ("control", ()), ("ctrl", ())],
)
def test_parse(label, genes):
    assert pt.pp.parse_perturbation(label) == genes


def test_parse_custom_delimiter_and_control():
    assert pt.pp.parse_perturbation("A_B", delimiter="_") == ("A", "B")
    assert pt.pp.parse_perturbation("NT", control="NT") == ()


def test_standardize(adata):
    adata.obs["raw"] = adata.obs["perturbation"].astype(str).str.replace("control", "ctrl")
    adata.obs.loc[adata.obs["raw"] != "ctrl", "raw"] = adata.obs["raw"] + "+ctrl"
    out = pt.pp.standardize_perturbations(adata, "raw", control="ctrl", key_added="std", copy=True)
    assert "std" not in adata.obs
    assert (out.obs["std"].astype(str) == adata.obs["perturbation"].astype(str)).all()
    assert pt.pp.canonical_label(("B", "A")) == "A+B"
