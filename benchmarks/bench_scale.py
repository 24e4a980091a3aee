"""Genome-scale labels: `pt.pp.deg_labels` streaming a backed h5ad, side by side with crispyx on the same file.

Synthetic sparse screens from the package's simulator (`pt.data.write_synthetic_h5ad`: CSR float32 log1p(CP10k),
cells in random order), growing to 1,000,000 cells x 8,000 genes x 10,000 perturbations. For each size:

- perturbtools on ``anndata.read_h5ad(path, backed="r")``, ``chunk_size`` cells read at a time: wall time and peak RSS,
  once with the labels returned in memory (``varm``, 38 bytes per gene and perturbation), once written to an h5ad
  file block by block (``deg_labels(..., out=path)``; ``_out`` columns), as crispyx writes its results to disk, and
  once more to a file with the sums of half the perturbations at a time (``perturbations_per_pass``, the file read
  twice; ``_out_2passes`` columns);
- perturbtools in memory on the same file, where it fits (``--in-memory-max`` cells): max |t| difference to backed;
- crispyx ``de.t_test`` (0.2.2, in its own venv: ``--crispyx-python``) on the same file with its expression filters
  off (every gene tested, as scanpy and perturbtools do) and all cores: wall time, peak RSS, and the max |t|
  difference to perturbtools over every perturbation and gene.

Each run is a fresh subprocess that first makes a warm-up call on a tiny file (imports and numba JIT are not timed).
Peak RSS is the process's maximum resident set (``VmHWM`` in ``/proc/self/status``, Linux), imports included. Generated files are cached in
``--cache`` (default ``benchmarks/results/cache``, git-ignored; the 1M-cell file is 6.6 GB)::

    python -m venv ../crispyx-venv && ../crispyx-venv/bin/pip install crispyx==0.2.2 psutil
    python benchmarks/bench_scale.py --crispyx-python ../crispyx-venv/bin/python            # all sizes
    python benchmarks/bench_scale.py --crispyx-python ../crispyx-venv/bin/python --quick    # two small sizes

Writes ``benchmarks/results/scale_deg_labels.csv`` (``scale_deg_labels_quick.csv`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SIZES = [(10_000, 8_000, 100), (100_000, 8_000, 1_000), (1_000_000, 8_000, 10_000)]
QUICK = [(5_000, 1_000, 50), (20_000, 1_000, 200)]
HERE = Path(__file__).parent

CRISPYX_WORKER = """
import json, sys, time
from crispyx.de import t_test
kw = dict(perturbation_column="perturbation", control_label="control", min_pct_ctrl=0.0, min_pct_pert=0.0,
          min_mean_ctrl=0.0, min_mean_pert=0.0, verbose=False, force=True)
warm, path, out = sys.argv[1:4]
t_test(warm, output_path=out + ".warm.h5ad", **kw)
start = time.perf_counter()
t_test(path, output_path=out, **kw)
seconds = time.perf_counter() - start
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "rss_mb": int(hwm.split()[1]) / 1024}))
"""


def _make(path: Path, n_cells: int, n_genes: int, n_perts: int) -> None:
    import perturbtools as pt

    if path.exists():
        return
    part = path.with_suffix(".part")
    start = time.perf_counter()
    pt.data.write_synthetic_h5ad(part, n_cells, n_genes, n_perts, chunk_size=5_000, control_fraction=0.05, rng=0)
    part.replace(path)
    print(f"wrote {path.name} in {time.perf_counter() - start:.0f} s", flush=True)


def rss_mb(field: str = "VmHWM") -> float:
    """This process's peak (``VmHWM``) or current (``VmRSS``) resident set in MB, from ``/proc/self/status``.

    Unlike ``ru_maxrss``, ``VmHWM`` is not inherited across exec, so a worker subprocess reports its own peak.
    """
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1]) / 1024


def _perturbtools_worker(warm: str, path: str, mode: str, out: str, chunk_size: int) -> None:
    import anndata as ad
    import numpy as np

    import perturbtools as pt

    pt.pp.deg_labels(ad.read_h5ad(warm, backed="r"), min_cells=2, show_progress_bar=False)
    pt.pp.deg_labels(ad.read_h5ad(warm), min_cells=2)
    labels_file = Path(out).with_suffix(".labels.h5ad")
    start = time.perf_counter()
    if mode == "memory":
        a = ad.read_h5ad(path)  # reading the file into memory is part of the in-memory path's time
        pt.pp.deg_labels(a, min_cells=2)
    else:
        a = ad.read_h5ad(path, backed="r")
        kw = {"out": labels_file} if mode.startswith("backed_out") else {}
        if mode == "backed_out_2passes":  # the sums of half the perturbations at a time, the file read twice
            n_perts = a.obs["perturbation"].nunique() - 1
            kw["perturbations_per_pass"] = -(-n_perts // 2)
        pt.pp.deg_labels(a, min_cells=2, chunk_size=chunk_size, show_progress_bar=False, **kw)
    seconds = time.perf_counter() - start
    rss = rss_mb()
    if mode.startswith("backed_out"):  # read back only the two tables compared (the whole file is 38 bytes per entry)
        import h5py
        from anndata.io import read_elem

        with h5py.File(labels_file) as f:
            scores, n_de = read_elem(f["varm/deg_scores"]), int(read_elem(f["uns/deg/n_de"]).sum())
        labels_file.unlink()
    else:
        scores, n_de = a.varm["deg_scores"], int(a.varm["deg_is_de"].to_numpy().sum())
    np.save(out, scores.to_numpy(np.float32).T)  # perturbations x genes
    Path(out).with_suffix(".json").write_text(json.dumps(list(scores.columns)))
    print(json.dumps({"seconds": seconds, "rss_mb": rss, "n_de": n_de}))


def _run(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        msg = f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}"
        raise RuntimeError(msg)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _max_abs_diff(ours: Path, theirs: Path) -> float:
    """Max |t| difference between two perturbations x genes score tables, matched by perturbation name."""
    import numpy as np

    a, names_a = np.load(ours, mmap_mode="r"), json.loads(ours.with_suffix(".json").read_text())
    b, names_b = np.load(theirs, mmap_mode="r"), json.loads(theirs.with_suffix(".json").read_text())
    where = {n: i for i, n in enumerate(names_b)}
    if set(names_a) != set(where):
        return float("nan")
    idx = np.array([where[n] for n in names_a])
    return float(max(np.max(np.abs(a[lo : lo + 500] - b[idx[lo : lo + 500]])) for lo in range(0, len(idx), 500)))


def _crispyx_scores(result: Path, out: Path, var_names) -> None:
    """crispyx's t statistics (layer ``z_score``, perturbations x genes) as a score table like perturbtools'."""
    import anndata as ad
    import numpy as np

    r = ad.read_h5ad(result, backed="r")
    assert list(r.var_names) == list(var_names), "crispyx reordered the genes"
    scores = np.asarray(r.layers["z_score"][:], dtype=np.float32)
    np.save(out, np.nan_to_num(scores, nan=0.0))  # untested (constant) genes: NaN in crispyx, 0 in scanpy / ours
    out.with_suffix(".json").write_text(json.dumps([str(p) for p in r.obs_names]))
    r.file.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--crispyx-python", help="python of a venv with crispyx installed (skipped when absent)")
    parser.add_argument("--cache", type=Path, default=HERE / "results" / "cache")
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--in-memory-max", type=int, default=200_000, help="largest file also run in memory")
    parser.add_argument("--worker", nargs=5)
    args = parser.parse_args()
    if args.worker:
        _perturbtools_worker(*args.worker[:4], int(args.worker[4]))
        return
    import anndata as ad
    import pandas as pd

    args.cache.mkdir(parents=True, exist_ok=True)
    warm = args.cache / "scale_warmup.h5ad"
    _make(warm, 400, 50, 8)
    rows = []
    for n_cells, n_genes, n_perts in QUICK if args.quick else SIZES:
        path = args.cache / f"scale_{n_cells}_{n_genes}_{n_perts}.h5ad"
        _make(path, n_cells, n_genes, n_perts)
        backed = ad.read_h5ad(path, backed="r")
        nnz, var_names = int(backed.X.group["data"].shape[0]), backed.var_names
        backed.file.close()
        row = {"n_cells": n_cells, "n_genes": n_genes, "n_perturbations": n_perts, "nnz": nnz,
               "file_gb": path.stat().st_size / 1e9, "chunk_size": args.chunk_size, "cores": os.cpu_count()}  # fmt: skip
        stem = args.cache / f"scores_{n_cells}"
        ours = _run([sys.executable, __file__, "--worker", str(warm), str(path), "backed",
                     f"{stem}_backed.npy", str(args.chunk_size)])  # fmt: skip
        row |= {"perturbtools_backed_s": ours["seconds"], "perturbtools_backed_rss_mb": ours["rss_mb"],
                "n_de_entries": ours["n_de"]}  # fmt: skip
        to_file = _run([sys.executable, __file__, "--worker", str(warm), str(path), "backed_out",
                        f"{stem}_out.npy", str(args.chunk_size)])  # fmt: skip
        row |= {"perturbtools_out_s": to_file["seconds"], "perturbtools_out_rss_mb": to_file["rss_mb"],
                "max_abs_t_diff_out_vs_backed": _max_abs_diff(Path(f"{stem}_out.npy"), Path(f"{stem}_backed.npy")),
                "n_de_entries_out": to_file["n_de"]}  # fmt: skip
        halves = _run([sys.executable, __file__, "--worker", str(warm), str(path), "backed_out_2passes",
                       f"{stem}_out2.npy", str(args.chunk_size)])  # fmt: skip
        row |= {"perturbtools_out_2passes_s": halves["seconds"], "perturbtools_out_2passes_rss_mb": halves["rss_mb"],
                "max_abs_t_diff_out_2passes_vs_backed": _max_abs_diff(Path(f"{stem}_out2.npy"), Path(f"{stem}_backed.npy"))}  # fmt: skip
        if n_cells <= args.in_memory_max:
            mem = _run([sys.executable, __file__, "--worker", str(warm), str(path), "memory",
                        f"{stem}_memory.npy", str(args.chunk_size)])  # fmt: skip
            row |= {"perturbtools_memory_s": mem["seconds"], "perturbtools_memory_rss_mb": mem["rss_mb"],
                    "max_abs_t_diff_backed_vs_memory": _max_abs_diff(Path(f"{stem}_backed.npy"), Path(f"{stem}_memory.npy"))}  # fmt: skip
        if args.crispyx_python:
            result = args.cache / f"crispyx_{n_cells}.h5ad"
            cx = _run([args.crispyx_python, "-c", CRISPYX_WORKER, str(warm), str(path), str(result)])
            _crispyx_scores(result, Path(f"{stem}_crispyx.npy"), var_names)
            row |= {"crispyx_s": cx["seconds"], "crispyx_rss_mb": cx["rss_mb"],
                    "speedup_vs_crispyx": cx["seconds"] / ours["seconds"],
                    "speedup_vs_crispyx_out": cx["seconds"] / to_file["seconds"],
                    "speedup_vs_crispyx_out_2passes": cx["seconds"] / halves["seconds"],
                    "max_abs_t_diff_vs_crispyx": _max_abs_diff(Path(f"{stem}_backed.npy"), Path(f"{stem}_crispyx.npy"))}  # fmt: skip
        rows.append(row)
        print(pd.DataFrame([row]).to_string(index=False), flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(HERE / "results" / ("scale_deg_labels_quick.csv" if args.quick else "scale_deg_labels.csv"), index=False)
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
