"""Rename the direction-subtask columns of result files written before the 0.2 vocabulary (numbers untouched).

    python tools/rename_result_columns.py benchmarks/results/stamp_reference.csv ...

Used for results whose reference tool is not installed here (``bench_stamp_reference.py`` needs ``cell-stamp`` in
its own venv); every other results file is rewritten by rerunning its script. Only header names change:
``roc_auc_dir`` -> ``roc_auc_direction`` and ``pr_auc_dir`` -> ``pr_auc_direction`` (with any suffix).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

OLD = re.compile(r"\b(roc_auc|pr_auc)_dir(?=_|$)")


def rename(path: Path) -> int:
    """Rename the header of one CSV in place; 1 if it changed."""
    lines = path.read_text().splitlines(keepends=True)
    header = ",".join(OLD.sub(r"\1_direction", col) for col in lines[0].rstrip("\n").split(",")) + "\n"
    changed = header != lines[0]
    path.write_text(header + "".join(lines[1:]))
    return int(changed)


if __name__ == "__main__":
    print(sum(rename(Path(p)) for p in sys.argv[1:]), "file(s) renamed")
