"""Attribute agreement: the model's attribute heads, and the appraiser's soft attributes.

A checkpoint trained with ``--multitask`` carries :class:`ml.losses.AttributeHeads` (one
cosine classifier per attribute on the embedding) and each attribute's value list; the
predictor reads them back and says how likely each candidate's own values are. Soft
attributes typed by the appraiser ("colour: red") count +1 where the SKU agrees and -1 where
it says otherwise: evidence, never a filter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz

from ml.model import ATTRIBUTE_HEADS_KEY
from ml.rerank.text import fold
from ml.rerank.types import AttributeEvidence, AttributeMatch, CatalogueEntry

SOFT_SIMILARITY = 85.0


@dataclass(frozen=True)
class AttributePredictor:
    """Attribute heads as numpy: per attribute ``[n_values, dim]`` unit rows and a scale.

    ``predict(embeddings [n, dim])`` -> attribute -> ``[n_values]`` probabilities, the mean
    over the query's photos of the softmax of ``scale * cos``.
    """

    names: tuple[str, ...]
    values: Mapping[str, tuple[str, ...]]
    weights: Mapping[str, np.ndarray]
    scale: float = 16.0

    def predict(self, embeddings: np.ndarray) -> dict[str, np.ndarray]:
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        out = {}
        for name in self.names:
            logits = self.scale * x @ self.weights[name].T  # [n, n_values]
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            out[name] = p.mean(axis=0)
        return out

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> AttributePredictor | None:
        """The heads stored in a checkpoint, or None (trained without ``--multitask``)."""
        import torch

        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        heads = payload.get(ATTRIBUTE_HEADS_KEY) if isinstance(payload, dict) else None
        if not heads:
            return None
        names = tuple(heads["names"])
        weights = {}
        for name in names:
            w = heads["weights"][name].float().numpy()
            weights[name] = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
        return cls(names, {n: tuple(heads["values"][n]) for n in names}, weights,
                   float(heads.get("scale", 16.0)))


def attribute_agreement(
    predicted: Mapping[str, np.ndarray],
    predictor: AttributePredictor,
    entries: Sequence[CatalogueEntry],
) -> list[AttributeEvidence]:
    """Per candidate, the predicted probability of each of its own attribute values.

    ``score`` = sum over the SKU's known attributes of ``p(value) - 1 / n_values`` (above
    chance is evidence for, below it against); values the heads never saw count 0.
    """
    out = []
    for entry in entries:
        matches = []
        score = 0.0
        for name in predictor.names:
            expected = entry.value(name)
            values = predictor.values[name]
            if not expected or expected not in values:
                continue
            probs = predicted[name]
            p = float(probs[values.index(expected)])
            top = values[int(np.argmax(probs))]
            matches.append(AttributeMatch(name, expected, top, round(p, 4), top == expected))
            score += p - 1.0 / len(values)
        out.append(AttributeEvidence(matches, round(score, 4)))
    return out


def soft_attribute_agreement(
    soft: Mapping[str, str], entries: Sequence[CatalogueEntry]
) -> list[AttributeEvidence]:
    """Per candidate: +1 per given attribute the SKU shares (fuzzy, accent-folded), -1 per
    one it has with another value, 0 where the SKU does not say."""
    wanted = {str(k).strip().casefold(): str(v).strip() for k, v in soft.items() if str(v).strip()}
    out = []
    for entry in entries:
        matches = []
        score = 0.0
        for name, value in wanted.items():
            expected = entry.value(name)
            if not expected:
                continue
            similarity = fuzz.ratio(fold(value), fold(expected))
            agrees = similarity >= SOFT_SIMILARITY or fold(value) in fold(expected).split()
            matches.append(AttributeMatch(name, expected, value, 1.0 if agrees else 0.0, agrees))
            score += 1.0 if agrees else -1.0
        out.append(AttributeEvidence(matches, score))
    return out


__all__ = ["AttributePredictor", "attribute_agreement", "soft_attribute_agreement"]
