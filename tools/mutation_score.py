"""Mutation testing of the numeric cores and the evaluation wiring with mutmut; the score per module to a CSV.

The modules are ``[tool.mutmut] only_mutate`` in ``pyproject.toml``. Each mutant (an operator, constant, comparison,
argument or return value changed in ``src/``) is run against the tests that cover the mutated function (unit tests:
``-m "not slow and not realdata"``); a mutant is *killed* when a test fails. Lines that only hold message text
(``msg = ...``, string-only continuation lines, ``warnings.warn("...``) are not mutated: a reworded error message
is not a wrong formula. Numba is disabled during the run (``NUMBA_DISABLE_JIT=1``) so that the jitted kernel's
Python source is mutated and tested too.

Run from the repository root (slow: about 2-20 s per mutant on 2 cores)::

    PERTURBTOOLS_DATA_DIR=../shared/data python tools/mutation_score.py                 # every configured module
    PERTURBTOOLS_DATA_DIR=../shared/data python tools/mutation_score.py metrics._core   # some modules
    PERTURBTOOLS_DATA_DIR=../shared/data python tools/mutation_score.py pp._deg_core --mirror-tests

``--mirror-tests`` runs each mutant against the tests in the folders mirroring the mutated modules only
(``tests/metrics/`` for ``metrics._evaluate``; set through ``PERTURBTOOLS_MUTATION_TESTS``, read by
``tests/conftest.py``) instead of every unit test that calls the mutated function. The score is then a lower bound
of the full suite's (fewer tests can kill no more mutants) and a module whose functions every model and benchmark
test calls is measured in minutes instead of hours. A mutant that only tests outside those folders reach counts as
``no_tests`` (not killed).

Naming modules re-runs every mutant of them (mutmut re-runs every mutant it is given by name or pattern).
``--pending`` runs only the modules' unchecked mutants (e.g. those an interrupted run left) and
``--retry-survivors`` those and the surviving ones, e.g. after tests were added; ``--fresh-stats`` makes mutmut
re-record which tests reach each function (it records that only for tests it has not seen, so after a test was
changed or a function added a mutant can otherwise run against too few tests and be reported as surviving)::

    PERTURBTOOLS_DATA_DIR=../shared/data python tools/mutation_score.py pp._deg_core --mirror-tests --retry-survivors --fresh-stats

Results accumulate in ``mutants/`` (git-ignored). The script writes
``tools/mutation_score.csv`` (module, mutants, killed, survived, equivalent, timeout, no_tests, not_checked, checked,
score; score = killed / (killed + survived + timeout + no_tests), over the mutants that were checked) and
``tools/mutation_survivors.txt`` (the surviving mutants: ``mutmut show NAME`` prints one). A module that this run
did not check keeps its committed row, so one module can be measured at a time.

Equivalent mutants (the code behaves the same, so no test can kill them) are listed with the reason in
``tools/mutation_equivalent.csv`` (``mutant,mutated_line,reason``). They count in the ``equivalent`` column, not in the
score. An entry whose mutant no longer survives, or whose mutated line no longer matches ``mutmut show`` (the
function was edited and the mutants renumbered), is reported as stale and counts as a survivor until re-judged.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no_tests", 33: "no_tests", 36: "timeout", 24: "timeout",
          -24: "timeout", 152: "timeout", 255: "timeout", None: "not_checked"}  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    data = env.get("PERTURBTOOLS_DATA_DIR")
    if data:  # mutmut runs the tests from mutants/: a relative data folder would no longer resolve
        env["PERTURBTOOLS_DATA_DIR"] = str(Path(data).resolve())
    env.update({"NUMBA_DISABLE_JIT": "1", "MPLBACKEND": "agg", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    return env


def mirror_test_folders(modules: list[str]) -> list[str]:
    """The test folders mirroring ``modules`` (``metrics._evaluate`` -> ``tests/metrics``), in order, once each."""
    return list(dict.fromkeys(f"tests/{m.split('.')[0]}" for m in modules))


def pending_mutants(modules: list[str], *, survivors: bool) -> list[str]:
    """The unchecked mutants of ``modules`` (and the surviving ones with ``survivors``), by name."""
    names = []
    for module in modules:
        meta = ROOT / "mutants" / "src" / Path(*f"perturbtools.{module}".split(".")).with_suffix(".py.meta")
        if meta.exists():
            codes = json.loads(meta.read_text())["exit_code_by_key"]
            names += [name for name, code in codes.items() if code is None or (survivors and code == 0)]
    return names


def run(
    modules: list[str], max_children: int, *, mirror_tests: bool = False, fresh_stats: bool = False,
    names: list[str] | None = None,
) -> None:  # fmt: skip
    """Run mutmut on the modules (all configured ones when empty) or the named mutants; optionally on mirror tests."""
    if fresh_stats:  # mutmut re-records which tests reach each function only for tests it has not seen
        (ROOT / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    names = names or [f"perturbtools.{m}.*" for m in modules]
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *names]
    env = _env()
    if mirror_tests:
        if not modules:
            msg = "--mirror-tests needs the modules to run (e.g. metrics._evaluate)."
            raise SystemExit(msg)
        env["PERTURBTOOLS_MUTATION_TESTS"] = ",".join(mirror_test_folders(modules))
    subprocess.run(cmd, cwd=ROOT, env=env, check=False)


def mutated_line(name: str) -> str:
    """The added line of a mutant's diff (``mutmut show``), stripped."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=ROOT, capture_output=True, text=True)
    added = [
        line[1:].strip() for line in out.stdout.splitlines() if line.startswith("+") and not line.startswith("+++")
    ]
    return " ".join(added)


def equivalent_mutants(survivors: set[str]) -> set[str]:
    """Listed equivalent mutants that still survive with the listed mutated line; the others are reported stale."""
    path = ROOT / "tools" / "mutation_equivalent.csv"
    if not path.exists():
        return set()
    valid = set()
    for entry in csv.DictReader(path.open()):
        name = entry["mutant"]
        if name not in survivors:
            print(f"stale equivalent entry (not a survivor now): {name}")
        elif mutated_line(name) != entry["mutated_line"].strip():
            print(f"stale equivalent entry (mutated line changed, re-judge it): {name}")
        else:
            valid.add(name)
    return valid


def scores() -> tuple[list[dict], list[str]]:
    """Outcome counts per mutated module, and the names of surviving mutants that are not listed as equivalent."""
    outcomes = {}
    for meta in sorted((ROOT / "mutants" / "src").rglob("*.py.meta")):
        module = ".".join(meta.relative_to(ROOT / "mutants" / "src").with_suffix("").with_suffix("").parts)
        outcomes[module] = json.loads(meta.read_text()).get("exit_code_by_key", {})
    survived = {k for codes in outcomes.values() for k, code in codes.items() if STATUS.get(code) == "survived"}
    equivalent = equivalent_mutants(survived)
    rows, survivors = [], []
    for module, codes in outcomes.items():
        status = Counter(
            "equivalent" if k in equivalent else STATUS.get(code, "suspicious") for k, code in codes.items()
        )
        survivors += sorted(k for k, code in codes.items() if STATUS.get(code) == "survived" and k not in equivalent)
        checked = sum(n for s, n in status.items() if s != "not_checked")
        denominator = status["killed"] + status["survived"] + status["timeout"] + status["no_tests"]
        rows.append({
            "module": module, "mutants": len(codes), "killed": status["killed"], "survived": status["survived"],
            "equivalent": status["equivalent"], "timeout": status["timeout"], "no_tests": status["no_tests"],
            "not_checked": status["not_checked"], "checked": checked,
            "score": round(status["killed"] / denominator, 4) if denominator else float("nan"),
        })  # fmt: skip
    return rows, survivors


def merge_with_committed(rows: list[dict], survivors: list[str]) -> tuple[list[dict], list[str]]:
    """Keep the committed row (and survivors) of each module that this run did not check.

    ``mutants/`` holds only the modules of the latest run(s); a module with no checked mutant here keeps the score
    written by its own earlier run instead of being overwritten with an empty row.
    """
    csv_path, surv_path = ROOT / "tools" / "mutation_score.csv", ROOT / "tools" / "mutation_survivors.txt"
    committed = {r["module"]: r for r in csv.DictReader(csv_path.open())} if csv_path.exists() else {}
    old_survivors = surv_path.read_text().split() if surv_path.exists() else []
    measured = {r["module"]: r for r in rows if r["checked"]}
    merged = {**committed, **{r["module"]: r for r in rows if r["module"] not in committed}, **measured}
    unmeasured = set(merged) - set(measured)
    kept = [name for name in old_survivors if name.rsplit(".", 1)[0] in unmeasured]
    return [merged[m] for m in sorted(merged)], sorted(set(kept) | set(survivors))


def main(argv: list[str]) -> int:
    """Run, then write the CSV and the survivors list."""
    modules = [a for a in argv if not a.startswith("--")]
    max_children = int(next((a.split("=")[1] for a in argv if a.startswith("--max-children=")), 2))
    names = None
    if "--pending" in argv or "--retry-survivors" in argv:
        names = pending_mutants(modules, survivors="--retry-survivors" in argv)
        print(f"{len(names)} mutants to check")
        if not names:
            argv = [*argv, "--report-only"]
    if "--report-only" not in argv:
        mirror, fresh = "--mirror-tests" in argv, "--fresh-stats" in argv
        run(modules, max_children, mirror_tests=mirror, fresh_stats=fresh, names=names)
    rows, survivors = scores()
    rows, survivors = merge_with_committed(rows, survivors)
    with (ROOT / "tools" / "mutation_score.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (ROOT / "tools" / "mutation_survivors.txt").write_text("\n".join(survivors) + "\n")
    for r in rows:
        print(f"{r['module']:40s} {r['killed']:>5}/{r['checked']:>5} checked of {r['mutants']:>5}  score {r['score']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
