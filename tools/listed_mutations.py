"""Apply each wrong formula that once left the test suite green (issue 12) and check that a test now fails.

Each mutation is one textual replacement in ``src/``; the file is restored afterwards whatever happens. The tests
named beside it must go red. Run from the repository root::

    PERTURBTOOLS_DATA_DIR=../shared/data python tools/listed_mutations.py

Writes ``tools/listed_mutations.csv`` (mutation, file, tests, outcome).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "perturbtools"

#: (name, file, original text, wrong text, tests that must fail)
MUTATIONS = [
    ("rank metric replaced by a constant stub", "metrics/_core.py",
     "return ((sim > mine + tol).sum(axis=1) + 0.5 * ties) / (sim.shape[1] - 1)", "return np.full(sim.shape[0], 0.45)",
     "tests/metrics/test_core.py"),
    ("kNN weights uniform instead of exp(-d)", "tl/_baselines.py",
     "w = np.exp(-(d - d.min(axis=1, keepdims=True))) if weighted else np.ones_like(d)", "w = np.ones_like(d)",
     "tests/tl/test_baselines.py"),
    ("0.1 fold-change offset removed", "pp/_deg.py",
     "fc = fold_change(mean_p, mean_c, offset=fc_offset)", "fc = fold_change(mean_p, mean_c, offset=0.0)",
     "tests/pp/test_deg.py"),
    ("pearson_de_delta on the top-40 mask", "metrics/_evaluate.py",
     'per["pearson_de_delta"] = rowwise_pearson(s.mean - mu_c, mu - mu_c, top20)',
     'per["pearson_de_delta"] = rowwise_pearson(s.mean - mu_c, mu - mu_c, top40)',
     "tests/metrics/test_evaluate.py"),
    ("energy distance doubled", "metrics/_distribution.py",
     "return float(2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean())",
     "return 2 * float(2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean())",
     "tests/metrics/test_core.py"),
    ("MMD returns 0", "metrics/_distribution.py",
     "return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())", "return 0.0",
     "tests/metrics/test_core.py"),
    ("top-50 mask ranked by |t| instead of signed t", "pp/_deg_core.py",
     "top50 = mask_of(first(scores, n_top50))", "top50 = mask_of(first(np.abs(scores), n_top50))",
     "tests/pp/test_deg.py"),
    ("GP outputs not centred", "tl/_gp/_model.py",
     "self.y_mean_ = delta.mean(axis=0)", "self.y_mean_ = np.zeros(delta.shape[1])",
     "tests/tl/test_gp.py"),
    ("synergy threshold changed", "tl/_gi_core.py",
     '"synergy": ("magnitude", ">", 1.15, True),', '"synergy": ("magnitude", ">", 1.25, True),',
     "tests/tl/test_gi.py"),
    ("cross_validate also trains on the test fold", "bm/_cross_validation.py",
     "specs[name], adata, data, train, test, labels_key=labels_key, seed=fold_seed + fold, keep=oof[name],",
     "specs[name], adata, data, train + test, test, labels_key=labels_key, seed=fold_seed + fold, keep=oof[name],",
     "tests/bm/test_cross_validation.py"),
]  # fmt: skip


def run_one(name: str, rel: str, old: str, new: str, tests: str) -> str:
    """Apply one mutation, run its tests, restore the file; the outcome as text."""
    path = SRC / rel
    original = path.read_text()
    if original.count(old) != 1:
        return f"not applied: the original text occurs {original.count(old)} times in {rel}"
    try:
        path.write_text(original.replace(old, new))
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow", tests]
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    finally:
        path.write_text(original)
    tail = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-200:]
    return ("killed: " if result.returncode != 0 else "SURVIVED: ") + tail


def main() -> int:
    """Run every listed mutation and write the CSV; non-zero exit if one survived."""
    rows = []
    for name, rel, old, new, tests in MUTATIONS:
        outcome = run_one(name, rel, old, new, tests)
        print(f"{name:55s} {outcome}", flush=True)
        rows.append({"mutation": name, "file": f"src/perturbtools/{rel}", "tests": tests, "outcome": outcome})
    with (ROOT / "tools" / "listed_mutations.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return int(any(not r["outcome"].startswith("killed") for r in rows))


if __name__ == "__main__":
    raise SystemExit(main())
