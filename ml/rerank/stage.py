"""The re-ranking stage: the fused visual top-K, checked with stronger evidence.

    ranking = rank_skus(...)                                  # visual, per SKU
    result = Reranker(store=..., fusion=...).rerank(query, ranking, catalogue=..., ...)

For each of the first ``top_k`` candidates the stage gathers, each kind switchable in
:class:`RerankConfig`:

* **spatial**: local features of each query crop against the candidate's reference images
  (the catalogue image first and weighted :attr:`RerankConfig.primary_weight`, then its
  best-retrieved ones), inliers of one homography, counted only where the colours agree;
* **text**: words read on the crop (OCR; only on close calls by default, it is the costly
  part) fuzzily matched to the candidate's name, brand, series, description and the words
  read on its references at index time;
* **attributes**: the model's attribute heads against the SKU's values;
* **query_text** / **soft_attributes**: what the appraiser typed;

then :class:`ml.rerank.fusion.FusionModel` turns the visual score and the evidence into a
probability that ranks the candidates and decides whether the first is a confident match.
Candidates past ``top_k`` keep their visual order below the re-ranked ones.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from ml.rerank import spatial
from ml.rerank.attributes import (
    AttributePredictor,
    attribute_agreement,
    soft_attribute_agreement,
)
from ml.rerank.fusion import DEFAULT_FUSION, FusionModel
from ml.rerank.memo import QueryEvidenceMemo
from ml.rerank.ocr import OcrEngine, read_all
from ml.rerank.store import ReferenceStore
from ml.rerank.text import match_words, vocabulary
from ml.rerank.types import (
    AttributeEvidence,
    CandidateEvidence,
    CatalogueEntry,
    LocalFeatures,
    OcrWord,
    RerankQuery,
    RerankResult,
    SpatialEvidence,
    TextEvidence,
)
from ml.types import SkuScore

DEFAULT_TOP_K = 8
MAX_QUERY_TEXT = 500  # characters of typed text considered


@dataclass(frozen=True)
class RerankConfig:
    """Which evidence to gather, and how much of it.

    Attributes:
        top_k: candidates re-ranked (the rest keep their visual order below them).
        spatial, text, attributes, query_text, soft_attributes: each kind on or off.
        ocr_margin: read text only when the first two candidates' cosines are closer than
            this (a close call); None reads every query.
        references_per_candidate: reference images verified per candidate.
        primary_weight: weight of a catalogue image's inliers against an appraisal photo's.
        inlier_floor: fewer inliers than this count as none (chance agreements).
    """

    top_k: int = DEFAULT_TOP_K
    spatial: bool = True
    text: bool = True
    attributes: bool = True
    query_text: bool = True
    soft_attributes: bool = True
    ocr_margin: float | None = 0.04
    references_per_candidate: int = 2
    primary_weight: float = 2.0
    inlier_floor: int = 8

    def without(self, *kinds: str) -> RerankConfig:
        """This configuration with the named kinds switched off."""
        return replace(self, **{k: False for k in kinds})


def spatial_feature(evidence: SpatialEvidence | None, floor: int) -> float:
    """``log1p(weight * colour-consistent inliers)`` once the plain inliers reach ``floor``."""
    if evidence is None or evidence.inliers < floor:
        return 0.0
    return float(np.log1p(evidence.weight * evidence.colour_inliers))


class Reranker:
    """Re-ranks one query's candidates with evidence (thread-safe: no per-query state).

    Args:
        config: the kinds of evidence and their settings.
        store: reference features and words of the index version (None: no spatial
            evidence, and no reference words).
        fusion: the calibrated combination (default: the measured :data:`DEFAULT_FUSION`).
        ocr: reads the query crops (None: no text evidence from the photos).
        attributes: the model's attribute heads (None: no attribute evidence).
        memo: keeps query crops' features and words for re-ranking the same photos again
            (the gate); None computes them for every query.
    """

    def __init__(
        self,
        config: RerankConfig | None = None,
        *,
        store: ReferenceStore | None = None,
        fusion: FusionModel | None = None,
        ocr: OcrEngine | None = None,
        attributes: AttributePredictor | None = None,
        memo: QueryEvidenceMemo | None = None,
    ) -> None:
        self.config = config or RerankConfig()
        self.store = store
        self.fusion = fusion or DEFAULT_FUSION
        self.ocr = ocr
        self.attributes = attributes
        self.memo = memo

    def rerank(
        self,
        query: RerankQuery,
        candidates: Sequence[SkuScore],
        *,
        catalogue: Mapping[int, CatalogueEntry],
        sku_references: Mapping[int, Sequence[int]] | None = None,
        ref_to_sku: Mapping[int, int] | None = None,
        query_features: Sequence[LocalFeatures] | None = None,
        ocr_words: Sequence[OcrWord] | None = None,
    ) -> RerankResult:
        """Re-rank ``candidates`` (the visual ranking, best first).

        Args:
            query: crops, hits, typed text and soft attributes.
            candidates: the fused visual ranking (:func:`ml.fuse.rank_skus`).
            catalogue: SKU id -> its text and attributes (at least every candidate's).
            sku_references: SKU id -> all its reference ids (to find its catalogue image
                when the search did not return it); default: the references in the hits.
            ref_to_sku: reference id -> SKU id for the hits (needed to pick each
                candidate's best-retrieved references).
            query_features, ocr_words: precomputed per-crop features / words (benchmarks
                reuse them across configurations); computed here when None.

        Returns:
            :class:`RerankResult`: candidates by fused probability (``score``), evidence in
            the same order, the confident flag, and ``timings_ms`` per kind.
        """
        cfg = self.config
        timings: dict[str, float] = {}
        head = list(candidates[: max(0, cfg.top_k)])
        tail = list(candidates[len(head):])
        if not head:
            return RerankResult(list(candidates), [], False, timings)
        entries = [catalogue.get(c.sku_id, CatalogueEntry(c.sku_id)) for c in head]
        references = self._references(query, head, sku_references, ref_to_sku or {})
        n = len(head)

        spatial_ev: list[SpatialEvidence | None] = [None] * n
        if cfg.spatial and self.store is not None and len(self.store):
            started = time.perf_counter()
            if query_features is None:
                query_features = [self._features(crop) for crop in query.crops]
            spatial_ev = self._verify(query_features, references)
            timings["rerank_spatial"] = (time.perf_counter() - started) * 1000

        text_ev: list[TextEvidence | None] = [None] * n
        if cfg.text and (self.ocr is not None or ocr_words is not None) and self.close_call(
            head
        ):
            started = time.perf_counter()
            if ocr_words is None:
                ocr_words = self._read(query.crops)
            vocabularies = [
                vocabulary(entry, self._reference_words(references[i]))
                for i, entry in enumerate(entries)
            ]
            text_ev = list(match_words(ocr_words, vocabularies))
            timings["rerank_text"] = (time.perf_counter() - started) * 1000

        typed_ev: list[TextEvidence | None] = [None] * n
        typed = (query.query_text or "")[:MAX_QUERY_TEXT]
        if cfg.query_text and typed.strip():
            started = time.perf_counter()
            vocabularies = [vocabulary(entry) for entry in entries]
            typed_ev = list(match_words(typed.split(), vocabularies))
            timings["rerank_query_text"] = (time.perf_counter() - started) * 1000

        attr_ev: list[AttributeEvidence | None] = [None] * n
        if cfg.attributes and self.attributes is not None and query.embeddings is not None:
            started = time.perf_counter()
            predicted = self.attributes.predict(query.embeddings)
            attr_ev = list(attribute_agreement(predicted, self.attributes, entries))
            timings["rerank_attributes"] = (time.perf_counter() - started) * 1000

        soft_ev: list[AttributeEvidence | None] = [None] * n
        if cfg.soft_attributes and query.soft_attributes:
            soft_ev = list(soft_attribute_agreement(query.soft_attributes, entries))

        started = time.perf_counter()
        top_cosine = max(c.cosine for c in head)
        evidence = []
        for i, cand in enumerate(head):
            text_i, attr_i, typed_i, soft_i = text_ev[i], attr_ev[i], typed_ev[i], soft_ev[i]
            features = {
                "visual": cand.cosine,
                "visual_gap": cand.cosine - top_cosine,
                "spatial": spatial_feature(spatial_ev[i], cfg.inlier_floor),
                "text": text_i.score if text_i else 0.0,
                "attributes": attr_i.score if attr_i else 0.0,
                "query_text": typed_i.score if typed_i else 0.0,
                "soft_attributes": soft_i.score if soft_i else 0.0,
            }
            features = {k: round(float(v), 6) for k, v in features.items()}
            evidence.append(CandidateEvidence(
                sku_id=cand.sku_id,
                visual_rank=i + 1,
                cosine=cand.cosine,
                probability=round(self.fusion.probability(features), 6),
                features=features,
                contributions=self.fusion.contributions(features),
                spatial=spatial_ev[i],
                text=text_ev[i],
                attributes=attr_ev[i],
                query_text=typed_ev[i],
                soft_attributes=soft_ev[i],
            ))
        order = sorted(range(n), key=lambda i: (-evidence[i].probability, evidence[i].visual_rank))
        ranked = [replace(head[i], score=evidence[i].probability) for i in order]
        # Below the re-ranked head the rest keep their order, never scored above its last.
        floor = ranked[-1].score
        ranked += [replace(c, score=min(floor, c.score)) for c in tail]
        ordered_evidence = [evidence[i] for i in order]
        confident = ordered_evidence[0].probability >= self.fusion.threshold
        timings["rerank_fuse"] = (time.perf_counter() - started) * 1000
        return RerankResult(ranked, ordered_evidence, confident, timings)

    # ----- helpers -------------------------------------------------------------------------

    def _features(self, crop: Image.Image) -> LocalFeatures:
        if self.memo is None:
            return spatial.extract(crop)
        return self.memo.features(crop, spatial.extract)

    def _read(self, crops: Sequence[Image.Image]) -> list[OcrWord]:
        ocr = self.ocr
        assert ocr is not None
        if self.memo is None:
            return read_all(ocr, crops)[0]
        return [OcrWord(w.text, w.confidence, w.box, i)
                for i, crop in enumerate(crops) for w in self.memo.words(crop, ocr.read)]

    def close_call(self, head: Sequence[SkuScore]) -> bool:
        """The first two candidates are close enough that reading text is worth its cost."""
        margin = self.config.ocr_margin
        if margin is None or len(head) < 2:
            return True
        return head[0].cosine - head[1].cosine < margin

    def _references(
        self,
        query: RerankQuery,
        head: Sequence[SkuScore],
        sku_references: Mapping[int, Sequence[int]] | None,
        ref_to_sku: Mapping[int, int],
    ) -> list[list[int]]:
        """Per candidate, the references to verify: catalogue images first, then the ones the
        search ranked highest, up to ``references_per_candidate``."""
        best: dict[int, float] = {}
        cos = np.asarray(query.cosines, dtype=np.float64).ravel()
        ids = np.asarray(query.reference_ids, dtype=np.int64).ravel()
        for c, r in zip(cos.tolist(), ids.tolist(), strict=True):
            if r >= 0 and np.isfinite(c) and c > best.get(r, -np.inf):
                best[r] = c
        by_sku: dict[int, list[int]] = {}
        for r in sorted(best, key=lambda r: -best[r]):
            sku = ref_to_sku.get(r)
            if sku is not None:
                by_sku.setdefault(int(sku), []).append(r)
        out = []
        limit = max(1, self.config.references_per_candidate)
        for cand in head:
            retrieved = by_sku.get(cand.sku_id, [])
            if cand.reference_id >= 0 and cand.reference_id not in retrieved:
                retrieved = [cand.reference_id, *retrieved]
            everything = list((sku_references or {}).get(cand.sku_id, ())) or retrieved
            store = self.store
            primary = [r for r in everything if store is not None and store.is_primary(r)]
            chosen: list[int] = []
            for r in [*primary[:1], *retrieved, *primary[1:]]:
                if r not in chosen and (store is None or r in store):
                    chosen.append(r)
                if len(chosen) == limit:
                    break
            out.append(chosen)
        return out

    def _reference_words(self, reference_ids: Sequence[int]) -> list[str]:
        if self.store is None:
            return []
        return [w for r in reference_ids for w in self.store.words(r)]

    def _verify(
        self, query_features: Sequence[LocalFeatures], references: Sequence[Sequence[int]]
    ) -> list[SpatialEvidence | None]:
        assert self.store is not None
        flat = sorted({r for refs in references for r in refs})
        stored = {r: self.store.get(r) for r in flat}
        usable = [r for r in flat if stored[r] is not None]
        per_pair: dict[tuple[int, int], SpatialEvidence] = {}
        for qi, qf in enumerate(query_features):
            ref_feats = [stored[r].features for r in usable]  # type: ignore[union-attr]
            matches = spatial.ratio_matches(qf.descriptors, [f.descriptors for f in ref_feats])
            for r, rf, m in zip(usable, ref_feats, matches, strict=True):
                weight = self.config.primary_weight if stored[r].primary else 1.0  # type: ignore[union-attr]
                per_pair[(qi, r)] = _pair_evidence(qi, r, qf, rf, m, weight)
        out: list[SpatialEvidence | None] = []
        for refs in references:
            pairs = [per_pair[(qi, r)] for qi in range(len(query_features)) for r in refs
                     if (qi, r) in per_pair]
            floor = self.config.inlier_floor
            out.append(max(pairs, key=lambda e: (spatial_feature(e, floor), e.inliers))
                       if pairs else None)
        return out


def _pair_evidence(
    query_index: int,
    reference_id: int,
    q: LocalFeatures,
    r: LocalFeatures,
    matches: np.ndarray,
    weight: float,
) -> SpatialEvidence:
    # Geometry at one working resolution for both images, so the threshold means the same.
    qs = spatial.QUERY_SIDE / max(q.image_size)
    rs = spatial.QUERY_SIDE / max(r.image_size)
    src = q.xy[matches[:, 0]] * qs
    dst = r.xy[matches[:, 1]] * rs
    geometry = spatial.verify_geometry(src, dst)
    inlier_pairs = matches[geometry.inliers]
    agree = spatial.colour_agreement(q.colours[inlier_pairs[:, 0]], r.colours[inlier_pairs[:, 1]])
    qp = q.xy[inlier_pairs[:, 0]]
    rp = r.xy[inlier_pairs[:, 1]]
    drawn = np.argsort(-agree, kind="stable")[: spatial.MAX_DRAWN_MATCHES]
    evidence = SpatialEvidence(
        query_index=query_index,
        reference_id=int(reference_id),
        matches=int(len(matches)),
        inliers=geometry.count,
        colour_inliers=round(float(agree.sum()), 3),
        weight=weight,
        score=0.0,
        query_size=q.image_size,
        reference_size=r.image_size,
        query_points=[(round(float(x), 1), round(float(y), 1)) for x, y in qp[drawn]],
        reference_points=[(round(float(x), 1), round(float(y), 1)) for x, y in rp[drawn]],
        query_parts=spatial.key_parts(qp, q.image_size) if geometry.count else [],
        reference_parts=spatial.key_parts(rp, r.image_size) if geometry.count else [],
    )
    return replace(evidence, score=round(float(np.log1p(weight * evidence.colour_inliers)), 4))


__all__ = ["DEFAULT_TOP_K", "RerankConfig", "Reranker", "spatial_feature"]
