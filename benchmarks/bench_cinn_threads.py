"""PerturbNet cINN epoch time on 1 and 2 torch threads, alone and with one competing busy process.

    PERTURBTOOLS_DATA_DIR=../shared/data python benchmarks/bench_cinn_threads.py

On the Papalexi 2021 THP-1 screen (19 training perturbations with GO terms, about 13k cells), scVI trained 1 epoch
(its latents only feed the timing), cINN 20 blocks, batch 128, 3 epochs without early stopping, timed per epoch
(mean of 2 fits per setting). The cINN's layers are tiny, so extra threads only add synchronisation; when another
process keeps a core busy, OpenMP threads spin-wait and an epoch gets several times slower. PerturbNet therefore
trains its cINN on one thread (``torch_threads(1)``); the ``threads`` column here overrides that by calling the
training loop under the given count. Writes ``benchmarks/results/cinn_threads.csv``.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pandas as pd

import perturbtools as pt
from perturbtools import _scvi
from perturbtools.tl import _torch
from perturbtools.tl._perturbnet import _model as perturbnet_model

OUT = Path(__file__).parent / "results" / "cinn_threads.csv"


def _busy(stop) -> None:  # one core kept busy, as another job on a shared machine
    while not stop.is_set():
        pass


def main() -> None:
    pt.settings.progress_bar = False
    go = pt.pp.go_embedding(n_components=64)
    adata = pt.data.papalexi2021_lowmoi()
    pt.pp.deg_labels(adata, modality_key="perturbation_type")
    pt.pp.add_gene_embedding(adata, go, key_added="go")
    perts = [p for p in adata.uns["deg"]["perturbations"] if all(g in go.index for g in pt.pp.parse_perturbation(p))]
    sc = _scvi.train_scvi(adata, layer="counts", n_latent=10, max_epochs=1, seed=0)
    original = _torch.torch_threads
    rows = []
    for contention in (False, True):
        stop = mp.Event()
        proc = mp.Process(target=_busy, args=(stop,)) if contention else None
        if proc:
            proc.start()
        for threads in (1, 2):
            _torch.torch_threads = lambda n, t=threads: original(t)  # the count under test instead of PerturbNet's 1
            perturbnet_model.torch_threads = _torch.torch_threads
            times = []
            for _ in range(2):
                m = pt.tl.PerturbNet(adata, representation="embedding", embedding="go", n_blocks=20, scvi_model=sc)
                start = time.perf_counter()
                m.fit(perts[:19], max_epochs=3, lr=1e-3, early_stopping_patience=None, show_progress_bar=False)
                times.append((time.perf_counter() - start) / 3)
            rows.append({"busy_process": contention, "torch_threads": threads, "seconds_per_epoch": sum(times) / 2})
            print(rows[-1], flush=True)
        if proc:
            stop.set()
            proc.join()
    _torch.torch_threads = perturbnet_model.torch_threads = original
    OUT.parent.mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(OUT, index=False)


if __name__ == "__main__":
    main()
