"""The main job's report: markdown tables, figures and notes written as they are made, quiet third-party logs."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import metrics
from .._settings import settings

if TYPE_CHECKING:
    from pathlib import Path


class Report:
    """Collects tables, figures and notes, and writes them."""

    def __init__(self, out: Path) -> None:
        self.out = out
        (out / "figures").mkdir(parents=True, exist_ok=True)
        self.sections: list[str] = []
        self.summaries: list[pd.DataFrame] = []
        self.per_perturbation: list[pd.DataFrame] = []

    def figure(self, fig_or_ax, name: str) -> str:
        import matplotlib.pyplot as plt

        fig = getattr(fig_or_ax, "figure", fig_or_ax)
        path = self.out / "figures" / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.sections.append(f"![{name}](figures/{name}.png)\n")
        return str(path)

    def table(self, title: str, df: pd.DataFrame, floatfmt: str = ".3f") -> None:
        self.sections.append(f"### {title}\n\n{_markdown(df, floatfmt)}\n")

    def text(self, text: str) -> None:
        self.sections.append(text + "\n")

    def flush(self) -> None:
        """Write what is done so far (report.md, metrics.csv, per_perturbation.csv): partial results survive a crash."""
        (self.out / "report.md").write_text("\n".join(self.sections))
        if self.summaries:
            pd.concat(self.summaries, ignore_index=True).to_csv(self.out / "metrics.csv", index=False)
        if self.per_perturbation:
            pd.concat(self.per_perturbation, ignore_index=True).to_csv(self.out / "per_perturbation.csv", index=False)


def _markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    df = df.copy()
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join([df.index.name or "", *cols]) + " |", "|" + "---|" * (len(cols) + 1)]
    for idx, row in df.iterrows():
        cells = [format(v, floatfmt) if isinstance(v, float | np.floating) else str(v) for v in row]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


def _summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    s = summary[summary["metric"].isin(metrics.KEY_METRICS)].copy()
    s["cell"] = [
        "undefined" if not np.isfinite(m) else f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else f"{m:.3f}"
        for m, lo, hi in zip(s["mean"], s["ci_low"], s["ci_high"], strict=True)
    ]
    wide = s.pivot(index="model", columns="metric", values="cell")
    if "ceiling" in s:
        ceiling = s.drop_duplicates("metric").set_index("metric")["ceiling"]
        wide.loc["noise ceiling"] = [f"{ceiling.get(m, np.nan):.3f}" for m in wide.columns]
    return wide[[m for m in metrics.KEY_METRICS if m in wide.columns]]


def _undefined_notes(summary: pd.DataFrame) -> str:
    """One line per headline metric that is undefined for some rows: the reason and the models it applies to."""
    s = summary[summary["metric"].isin(metrics.KEY_METRICS) & (summary["note"] != "")]
    lines = [
        f"`{metric}` ({', '.join(group['model'])}): {note}"
        for (metric, note), group in s.groupby(["metric", "note"], sort=False)
    ]
    return "; ".join(lines)


def _say(message: str) -> None:
    """A line on stderr for the person waiting (not with ``--quiet``)."""
    if settings.progress_bar:
        import sys

        print(message, file=sys.stderr, flush=True)


class _quiet_third_party:
    """Silence scvi-tools / Lightning tips, "GPU available" lines and library warnings for the run, unless verbose.

    Scoped to the run (restored afterwards); the package's own warnings still show.
    """

    _LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "scvi", "py.warnings")

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose

    def __enter__(self):
        self._warn = warnings.catch_warnings()
        self._warn.__enter__()
        self._levels = {}
        if not self.verbose:
            for mod in ("lightning", "pytorch_lightning", "scvi", "torch", "anndata", "scanpy", "sklearn"):
                warnings.filterwarnings("ignore", module=rf"{mod}(\.|$)")
            warnings.filterwarnings("ignore", category=FutureWarning)
            for name in self._LOGGERS:
                lg = logging.getLogger(name)
                self._levels[name] = lg.level
                lg.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        self._warn.__exit__(*exc)
        return False
