"""Re-ranking with evidence: the visual top-K checked with local features, text on the item,
attribute heads and what the appraiser typed, fused into a calibrated probability.

Submodules (imported explicitly, so that importing one kind does not load every library):

* ``types``: the frozen dataclasses in and out (``RerankQuery``, ``RerankResult``,
  ``CandidateEvidence``, ``CatalogueEntry``, ``SpatialEvidence``...);
* ``stage``: ``Reranker`` and ``RerankConfig``, the orchestration;
* ``spatial``: SIFT/RootSIFT features, ratio-test matching, MAGSAC homography, colour check,
  key parts;
* ``ocr``: RapidOCR (PP-OCRv4 ONNX) on the crop; ``text``: fuzzy words;
* ``attributes``: attribute heads and soft attributes; ``fusion``: the calibrated logistic
  model; ``store``: reference evidence computed at index time, stored with the index version;
* ``evaluate``: ``python -m ml evaluate --rerank``; ``gallery``: a gallery / query CSV pair
  as the stage sees it (catalogue, reference store, embeddings).
"""

__all__: list[str] = []
