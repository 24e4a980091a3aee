from __future__ import annotations

from perturbtools._keys import label_keys, prediction_keys


def test_keys_share_prefix():
    assert all(k.startswith("deg_") for k in label_keys("deg"))
    assert prediction_keys("stamp").de_proba == "stamp_de_proba"
