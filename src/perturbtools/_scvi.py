"""The only module that imports scvi-tools: train, encode, decode, and save/restore an SCVI model without pickle."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)


def _scvi():
    try:
        import scvi
    except ImportError as err:  # pragma: no cover
        msg = f"PerturbNet needs scvi-tools: `pip install 'perturbtools[scvi]'` ({err})."
        raise ImportError(msg) from err
    return scvi


def train_scvi(
    adata: AnnData,
    *,
    layer: str | None = "counts",
    n_latent: int = 10,
    gene_likelihood: str = "zinb",
    max_epochs: int = 100,
    accelerator: str = "auto",
    seed: int = 0,
    show_progress_bar: bool = False,
    **model_kwargs: Any,
):
    """Train ``scvi.model.SCVI`` (ZINB, 10 latent dims by default) on raw counts in ``layer``."""
    scvi = _scvi()
    scvi.settings.seed = seed
    adata = adata.copy()  # setup_anndata writes into its input
    scvi.model.SCVI.setup_anndata(adata, layer=layer)
    model = scvi.model.SCVI(adata, n_latent=n_latent, gene_likelihood=gene_likelihood, **model_kwargs)
    with warnings.catch_warnings():
        # Lightning's advice on dataloader workers and logging is noise here; every other warning is shown
        warnings.filterwarnings("ignore", message=r".*(num_workers|does not have many workers|log_every_n_steps).*")
        model.train(
            max_epochs=max_epochs,
            accelerator="cpu" if accelerator == "auto" else accelerator,
            enable_progress_bar=show_progress_bar,
        )
    return model


def sample_latent(model, adata: AnnData | None = None, *, give_mean: bool = False) -> np.ndarray:
    """Latent codes of cells (posterior samples by default, as PerturbNet trains its flow on)."""
    return np.asarray(model.get_latent_representation(adata, give_mean=give_mean), dtype=np.float32)


def log_library(model, adata: AnnData | None = None) -> np.ndarray:
    """Observed log library sizes of the cells the model was set up with."""
    import scipy.sparse as sp

    adata = model.adata if adata is None else adata
    layer = (
        model.adata_manager.data_registry["X"].attr_key
        if model.adata_manager.data_registry["X"].attr_name == "layers"
        else None
    )
    X = adata.layers[layer] if layer else adata.X
    total = np.asarray(X.sum(axis=1)).ravel() if sp.issparse(X) else X.sum(axis=1)
    return np.log(np.maximum(total, 1.0)).astype(np.float32)


def decode_counts(model, z: np.ndarray, log_lib: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Counts sampled from the decoder's likelihood at latent ``z`` with library sizes ``exp(log_lib)``."""
    import torch

    module = model.module
    module.eval()
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        zt = torch.from_numpy(np.asarray(z, dtype=np.float32))
        lib = torch.from_numpy(np.asarray(log_lib, dtype=np.float32)).reshape(-1, 1)
        out = module.generative(z=zt, library=lib, batch_index=torch.zeros(len(zt), 1, dtype=torch.long))
        return out["px"].sample().numpy()


def export_scvi(model) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Init parameters and weights of an SCVI model as JSON-able dict + numpy arrays (no pickle)."""
    params = dict(model.init_params_.get("non_kwargs", {})) | dict(
        model.init_params_.get("kwargs", {}).get("model_kwargs", {})
    )
    layer = model.adata_manager.data_registry["X"].attr_key
    params = {k: v for k, v in params.items() if isinstance(v, int | float | str | bool | type(None))}
    params["_layer"] = layer if model.adata_manager.data_registry["X"].attr_name == "layers" else None
    return params, {k: v.detach().cpu().numpy() for k, v in model.module.state_dict().items()}


def restore_scvi(adata: AnnData, params: dict[str, Any], state: dict[str, np.ndarray]):
    """Rebuild an SCVI model on ``adata`` from :func:`export_scvi` output."""
    import torch

    scvi = _scvi()
    params = dict(params)
    layer = params.pop("_layer", None)
    adata = adata.copy()
    scvi.model.SCVI.setup_anndata(adata, layer=layer)
    model = scvi.model.SCVI(adata, **params)
    model.module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    model.is_trained_ = True
    model.module.eval()
    return model


def decoder_gene_embedding(model):
    """Gene embedding from a trained scvi-tools model's decoder (genes x d).

    ``LinearSCVI`` (LDVAE): its loadings (genes x latent). ``SCVI``: the weights of the decoder's last layer
    (genes x hidden), i.e. how each gene reads the decoder's hidden representation.
    """
    import pandas as pd

    scvi = _scvi()
    if isinstance(model, scvi.model.LinearSCVI):
        return model.get_loadings().astype(np.float32)
    layer = model.module.decoder.px_scale_decoder[0]
    weight = layer.weight.detach().cpu().numpy()
    return pd.DataFrame(
        weight.astype(np.float32), index=model.adata.var_names, columns=[f"dec{i}" for i in range(weight.shape[1])]
    )
