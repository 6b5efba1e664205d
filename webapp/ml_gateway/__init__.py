"""The one place webapp talks to `ml`: plain data in and out, model and index cached per process.

- `runtime`: the embedder, the detector and item isolation, loaded once per process;
- `indexes`: index versions on disk, the active one cached, new ones built from plain ids and
  vectors;
- `serving`: matches and live rankings; `evidence`: the re-ranking stage's inputs;
- `training`, `calibration`, `datasets`: ml.train, the fits on decisions, the Grocery splits;
- `sources`: the plain data the gateway reads, through readers installed at start-up;
- `choices`: the names settings validates against (light: no model code).

Callers write ``from webapp import ml_gateway`` and ``ml_gateway.match_batch(...)``. Names are
loaded on first use, so that settings can import `choices` without loading torch.
"""

# ruff: noqa: F401 - the TYPE_CHECKING imports at the end name what __getattr__ exports

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Public name -> the submodule that defines it.
_EXPORTS = {
    **dict.fromkeys(
        ("default_model_ref", "detector", "embed_crops", "embedder", "embedder_name",
         "embedding_dim", "embedding_version", "isolate_items", "isolation_name", "isolator",
         "item_crop",
         "retrieval_config", "stage_threads"), "runtime"),
    **dict.fromkeys(
        ("IndexDraft", "IndexUpdate", "active_index", "index_files_present", "index_path",
         "index_update", "index_vectors", "indexed_reference_ids", "neighbours"), "indexes"),
    **dict.fromkeys(
        ("FusionModel", "catalogue_entries", "fusion_model", "gallery_rerank_step",
         "query_evidence_memo", "reference_store", "reference_store_publish", "rerank_config",
         "rerank_step", "reranker", "sku_reference_ids"), "evidence"),
    "QueryEvidenceMemo": "evidence",
    **dict.fromkeys(
        ("Isolation", "LiveRankings", "MatchQuery", "MatchResult", "active_sku_lookup",
         "gallery_outcomes", "match", "match_batch", "rank_live", "warm_up"), "serving"),
    **dict.fromkeys(
        ("FittedFusion", "IndexFiles", "IndexUnavailable", "ReferenceImage", "SkuDescription",
         "Sources", "sources_install", "sources_installed"), "sources"),
    **dict.fromkeys(
        ("TrainConfig", "augment_probabilities", "train", "train_config",
         "train_option_default", "train_option_names"), "training"),
    **dict.fromkeys(("fusion_fit", "threshold_fit", "weights_of"), "calibration"),
    "grocery_split": "datasets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once loaded, a plain module attribute (and patchable as one)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # the same names, for type checkers (ruff cannot read __all__ above)
    from webapp.ml_gateway.calibration import fusion_fit, threshold_fit, weights_of
    from webapp.ml_gateway.datasets import grocery_split
    from webapp.ml_gateway.evidence import (
        FusionModel,
        QueryEvidenceMemo,
        catalogue_entries,
        fusion_model,
        gallery_rerank_step,
        query_evidence_memo,
        reference_store,
        reference_store_publish,
        rerank_config,
        rerank_step,
        reranker,
        sku_reference_ids,
    )
    from webapp.ml_gateway.indexes import (
        IndexDraft,
        IndexUpdate,
        active_index,
        index_files_present,
        index_path,
        index_update,
        index_vectors,
        indexed_reference_ids,
        neighbours,
    )
    from webapp.ml_gateway.runtime import (
        default_model_ref,
        detector,
        embed_crops,
        embedder,
        embedder_name,
        embedding_dim,
        embedding_version,
        isolate_items,
        isolation_name,
        isolator,
        item_crop,
        retrieval_config,
        stage_threads,
    )
    from webapp.ml_gateway.serving import (
        Isolation,
        LiveRankings,
        MatchQuery,
        MatchResult,
        active_sku_lookup,
        gallery_outcomes,
        match,
        match_batch,
        rank_live,
        warm_up,
    )
    from webapp.ml_gateway.sources import (
        FittedFusion,
        IndexFiles,
        IndexUnavailable,
        ReferenceImage,
        SkuDescription,
        Sources,
        sources_install,
        sources_installed,
    )
    from webapp.ml_gateway.training import (
        TrainConfig,
        augment_probabilities,
        train,
        train_config,
        train_option_default,
        train_option_names,
    )
