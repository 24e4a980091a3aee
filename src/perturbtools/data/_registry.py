"""One place for every dataset file: where it lives under ``settings.datasetdir``, its URL and sha256.

``sha256=None`` marks a public file whose hash could not be recorded offline when this registry was written: the
loader then warns and prints the hash it computed, so a user can pin it.
"""

from __future__ import annotations

from typing import NamedTuple


class DatasetFile(NamedTuple):
    """One registered file."""

    folder: str
    filename: str
    url: str | None
    sha256: str | None
    shape: tuple[int, int] | None = None


_SCPERTURB = "https://zenodo.org/record/7041849/files/"

REGISTRY: dict[str, DatasetFile] = {
    # real data shipped beside the project (../shared/data); also downloadable where a URL is known
    "perturbench_devel": DatasetFile(
        "perturbench_devel",
        "devel.h5ad",
        "https://raw.githubusercontent.com/altoslabs/perturbench/d357dfae3b50968e800e9f5f273ff145080ae67c/src/perturbench/data/resources/devel.h5ad",
        "220998f5630c813228c8661c86dd52244b9ac87127511289af90e0d900d8429b",
        (5961, 500),
    ),
    "papalexi2021_lowmoi": DatasetFile(
        "papalexi2021_sceptre_lowmoi",
        "papalexi2021_thp1_lowmoi_299genes.h5ad",
        None,  # converted from sceptredata's .rda (see its SOURCE.md); no h5ad is published
        "dda0c6cae90c5530fa6b0a8ee2d7a2c452982d30fbddcf1928381b30b898da19",
        (20729, 299),
    ),
    "go_gene2go": DatasetFile(
        "go_human_orgHs",
        "gene2go_human.tsv.gz",
        None,
        "ff479eb5503ff54f0eb2e04dd4ed54b7ac59fca21dd7ccf1f101bbefa0d9df87",
    ),
    "go_parents": DatasetFile(
        "go_human_orgHs", "go_parents.tsv.gz", None, "bb226353b40dcf6af953f67647c475c2a3fd2f076f763cf17971e8eb1b8eae27"
    ),
    "gene_aliases": DatasetFile(
        "go_human_orgHs",
        "symbol_aliases_human.tsv.gz",
        None,
        "40ca1d54b9e78f13fe3e11b44e140e0a7e86c68ebf0dce71456b4c0b5726cfc5",
    ),
    "gene_summaries": DatasetFile(
        "gene_text_genept_subset",
        "GeneSummary.json",
        "https://raw.githubusercontent.com/PancakeZoy/scouter_misc/6f2c83e5a32505038060155ca8257fa094732e35/code/extra/ablation_randomwords/embd_curation/GeneSummary.json",
        "77997adf5d96d695758feb17f4399ebb31a41a5040f30e24879e424a4433e68c",
    ),
    "genept_subset": DatasetFile(
        "gene_text_genept_subset",
        "Embedding_small.csv.gz",
        "https://raw.githubusercontent.com/PancakeZoy/scouter_misc/e21581610120c378c352f3e606123a6a62a05da2/data/Data_Demo/Embedding_small.csv.gz",
        "11bda4e729ff732962a46c474d54fceaa6ab58080e0c99b1f508e30039259af8",
    ),
    "splits_norman": DatasetFile(
        "benchmark_splits_pfizer",
        "norman_perturbation_splits.pkl",
        "https://raw.githubusercontent.com/pfizer-opensource/perturb_seq/41f70980b481b9c854772cd8b8c5a4753c1c3eac/splits/norman_perturbation_splits.pkl",
        "97f9403f3dfade4f8366086a5bf2d418b0d2f3a6fdf07d04af9d2939d0550895",
    ),
    "splits_adamson": DatasetFile(
        "benchmark_splits_pfizer",
        "adamson_perturbation_splits.pkl",
        "https://raw.githubusercontent.com/pfizer-opensource/perturb_seq/41f70980b481b9c854772cd8b8c5a4753c1c3eac/splits/adamson_perturbation_splits.pkl",
        "2758fbdeaa7a780b0ae7f1ffe4cfe53ddb974a8b1047e54fa3f5c7964dc2110d",
    ),
    "splits_replogle_k562_essential": DatasetFile(
        "benchmark_splits_pfizer",
        "replogle_k562_essential_perturbation_splits.pkl",
        "https://raw.githubusercontent.com/pfizer-opensource/perturb_seq/41f70980b481b9c854772cd8b8c5a4753c1c3eac/splits/replogle_k562_essential_perturbation_splits.pkl",
        "6a92bba5e69d11187e52b40e042a76a76a7713ba274f93fe356c89f6533c63ae",
    ),
    "norman2019_gi_fits": DatasetFile(
        "norman2019_gi_reference",
        "regr_fits_final.csv",
        "https://raw.githubusercontent.com/thomasmaxwellnorman/Perturbseq_GI/3b25109aeb9c0c2026bd70abd50304a0ad4e5395/data_sharing/regr_fits_final.csv",
        "664331b7374e1dd22dd42c8a7b3f97aecf01dfb034701818101574fca4441ff3",
    ),
    "norman2019_gi_labels": DatasetFile(
        "norman2019_gi_reference",
        "gi_class_labels_dev53.json",
        None,  # a subset of Scouter's GI_truth.pkl (see its SOURCE.md)
        "851480dddae8490a028d458834b31a77a80e181c701a4d6e927944dd39f988b5",
    ),
    "norman2019_gi_scores_scouter": DatasetFile(
        "norman2019_gi_reference",
        "gi_scores_published_dev.csv",
        None,  # rows of Scouter's GI_scores_truth.csv (see its SOURCE.md)
        "c9babda0ae10f80ef583c62a7fe3772a4dd442d3a6902b89b99a296bfe6bbb94",
    ),
    "replogle2022_degsets": DatasetFile(
        "replogle2022_k562_rpe1_degsets",
        "replogle2022_k562_rpe1_dev351_up_signatures.json.gz",
        None,  # converted from sigrecon's .rda files (see its SOURCE.md)
        "963d54cf7f13175bba02f4b861ea916a59140e2bae08de3871caa2458cfd28ed",
    ),
    # full public datasets (scPerturb harmonised h5ad); downloaded on a user's machine
    "norman2019": DatasetFile(
        "scperturb", "NormanWeissman2019_filtered.h5ad", _SCPERTURB + "NormanWeissman2019_filtered.h5ad", None
    ),
    "adamson2016": DatasetFile(
        "scperturb",
        "AdamsonWeissman2016_GSM2406681_10X010.h5ad",
        _SCPERTURB + "AdamsonWeissman2016_GSM2406681_10X010.h5ad",
        None,
    ),
    "replogle2022_k562_essential": DatasetFile(
        "scperturb",
        "ReplogleWeissman2022_K562_essential.h5ad",
        _SCPERTURB + "ReplogleWeissman2022_K562_essential.h5ad",
        None,
    ),
    "replogle2022_rpe1": DatasetFile(
        "scperturb", "ReplogleWeissman2022_rpe1.h5ad", _SCPERTURB + "ReplogleWeissman2022_rpe1.h5ad", None
    ),
    "papalexi2021": DatasetFile(
        "scperturb", "PapalexiSatija2021_eccite_RNA.h5ad", _SCPERTURB + "PapalexiSatija2021_eccite_RNA.h5ad", None
    ),
}
