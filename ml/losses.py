"""Metric losses: a thin layer over pytorch-metric-learning (PML), plus what PML lacks.

* :data:`LOSSES`: name -> factory of a :class:`MetricCriterion` (a PML loss and its miner):
  ``triplet_semihard`` and ``triplet_batchhard`` (seeds 000, 002), ``circle`` (seed 000),
  ``multi_similarity``, and ``triplet_levels`` (the multi-attribute levels of seed 001).
* Known-wrong labels (a photo's ``negatives``: candidates a reviewer rejected) are added to
  whatever the miner picked, so review-queue hard negatives always reach the loss.
* :func:`attribute_levels` / :class:`LevelTripletLoss`: seed 001's multi-attribute triplet
  levels. A pair's level is 1 for the same SKU, otherwise the share of attributes (category,
  brand, series...) the two items share; every triplet whose positive sits on a higher level
  than its negative is enforced with a margin proportional to the level gap, so a near miss
  (same brand and category) ranks above a far miss.
* :class:`AttributeHeads` + :func:`masked_attribute_loss`: seed 001's multi-task attribute
  classification, masked where an attribute is missing.

All embeddings are L2-normalised and compared by cosine similarity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances, losses, miners
from torch import nn

MISSING = -1  # attribute code for "no value"


# ----- review-queue negatives ----------------------------------------------------------------


def add_known_negatives(
    indices: tuple[torch.Tensor, ...],
    labels: torch.Tensor,
    negative_mask: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """Add the known-wrong pairs to a miner's output.

    Args:
        indices: PML pairs ``(a1, p, a2, n)`` or triplets ``(a, p, n)``, each ``[m]`` long.
        labels: ``[batch]`` int labels.
        negative_mask: ``[batch, batch]`` bool, ``True`` where column j's label is known to be
            wrong for row i (only pairs with different labels are used).

    Returns:
        The same kind of tuple with every known negative pair ``(i, j)`` present: as an
        ``(a2, n)`` pair, or as triplets ``(i, p, j)`` for every positive ``p`` of ``i``.
    """
    known = negative_mask & (labels[:, None] != labels[None, :])
    ai, nj = torch.nonzero(known, as_tuple=True)
    if ai.numel() == 0:
        return indices
    if len(indices) == 4:
        a1, p, a2, n = indices
        pairs = torch.unique(torch.stack([torch.cat([a2, ai]), torch.cat([n, nj])]), dim=1)
        return a1, p, pairs[0], pairs[1]
    a, p, n = indices
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    extra = same[ai]  # [k, batch]: positives of each known pair's anchor
    k_idx, pos = torch.nonzero(extra, as_tuple=True)
    trip = torch.stack([torch.cat([a, ai[k_idx]]), torch.cat([p, pos]), torch.cat([n, nj[k_idx]])])
    trip = torch.unique(trip, dim=1)
    return trip[0], trip[1], trip[2]


# ----- multi-attribute levels (seed 001) -----------------------------------------------------


def attribute_levels(labels: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
    """Similarity level of every pair.

    Args:
        labels: ``[batch]`` int SKU labels.
        attrs: ``[batch, n_attr]`` int codes, :data:`MISSING` where unknown.

    Returns:
        ``[batch, batch]`` float in [0, 1]: 1 for the same label; otherwise matching
        attributes / attributes known on both sides (0 when none is known on both).
    """
    if attrs.numel() == 0:
        return (labels[:, None] == labels[None, :]).float()
    known = (attrs[:, None, :] != MISSING) & (attrs[None, :, :] != MISSING)  # [b, b, a]
    match = (attrs[:, None, :] == attrs[None, :, :]) & known
    share = match.sum(-1).float() / known.sum(-1).clamp(min=1).float()
    # A different SKU never reaches level 1 even when every attribute matches.
    share = share.clamp(max=0.99)
    return torch.where(labels[:, None] == labels[None, :], torch.ones_like(share), share)


class LevelTripletLoss(nn.Module):
    """Graded triplet loss over all in-batch triplets ordered by :func:`attribute_levels`.

    For anchor a, "positive" p and "negative" n with ``level[a, p] > level[a, n]``:
    ``relu(cos(a, n) - cos(a, p) + margin * (level[a, p] - level[a, n]))``, averaged over the
    triplets with a non-zero loss (online hard mining, as PML's AvgNonZeroReducer).
    """

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = margin

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, attrs: torch.Tensor
    ) -> torch.Tensor:
        """``embeddings [batch, dim]`` (unit length), ``labels [batch]``,
        ``attrs [batch, n_attr]`` -> scalar loss."""
        sim = embeddings @ embeddings.T  # [b, b]
        lev = attribute_levels(labels, attrs)
        b = sim.shape[0]
        eye = torch.eye(b, dtype=torch.bool, device=sim.device)
        gap = lev[:, :, None] - lev[:, None, :]  # [a, p, n]
        valid = (gap > 0) & ~eye[:, :, None] & ~eye[:, None, :]
        viol = sim[:, None, :] - sim[:, :, None] + self.margin * gap  # [a, p, n]
        viol = torch.relu(viol) * valid
        active = viol > 0
        if not bool(active.any()):
            return embeddings.sum() * 0.0
        return viol.sum() / active.sum()


# ----- multi-task attribute heads (seed 001) -------------------------------------------------


class AttributeHeads(nn.Module):
    """One cosine classifier per attribute on the shared embedding.

    Args:
        dim: embedding size.
        cardinalities: attribute name -> number of values.
        scale: logit temperature (cosine logits need scaling to train).
    """

    def __init__(self, dim: int, cardinalities: Mapping[str, int], scale: float = 16.0) -> None:
        super().__init__()
        self.names = list(cardinalities)
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.randn(n, dim) * 0.01) for n in cardinalities.values()]
        )
        self.scale = scale

    def forward(self, embeddings: torch.Tensor) -> list[torch.Tensor]:
        """``[batch, dim]`` -> one ``[batch, n_values]`` logits tensor per attribute."""
        return [self.scale * embeddings @ F.normalize(w, dim=1).T for w in self.weights]


def masked_attribute_loss(logits: list[torch.Tensor], attrs: torch.Tensor) -> torch.Tensor:
    """Mean over attributes of cross-entropy on the rows where the attribute is known.

    Args:
        logits: per attribute ``[batch, n_values]``.
        attrs: ``[batch, n_attr]`` int codes, :data:`MISSING` where unknown (masked out).
    """
    terms = []
    for k, lg in enumerate(logits):
        target = attrs[:, k]
        if bool((target != MISSING).any()):
            terms.append(F.cross_entropy(lg.float(), target, ignore_index=MISSING))
    if not terms:
        return logits[0].sum() * 0.0 if logits else torch.zeros(())
    return torch.stack(terms).mean()


class VaeHead(nn.Module):
    """Seed 001's third task: a variational autoencoder on the shared embedding.

    The embedding is encoded into a Gaussian latent, a sample is decoded into a small picture,
    and the loss is the reconstruction error of the (normalised, downsampled) input plus the KL
    divergence to a unit Gaussian, so the embedding must keep what the picture looks like, not
    only what separates the labels.

    Args:
        dim: embedding size.
        latent: latent size.
        out_size: side of the reconstructed picture (a power of two, at least 8).
    """

    def __init__(self, dim: int, *, latent: int = 64, out_size: int = 32) -> None:
        super().__init__()
        if out_size < 8 or out_size & (out_size - 1):
            raise ValueError("out_size must be a power of two >= 8")
        self.out_size = out_size
        self.encode = nn.Linear(dim, 2 * latent)
        self.seed = nn.Linear(latent, 128 * 4 * 4)
        layers: list[nn.Module] = []
        channels, side = 128, 4
        while side < out_size:
            out = 3 if side * 2 == out_size else max(16, channels // 2)
            layers.append(nn.ConvTranspose2d(channels, out, 4, stride=2, padding=1))
            if out != 3:
                layers.append(nn.ReLU(inplace=True))
            channels, side = out, side * 2
        self.decode = nn.Sequential(*layers)

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[batch, dim]`` -> (reconstruction ``[batch, 3, s, s]``, mu and logvar
        ``[batch, latent]``)."""
        mu, logvar = self.encode(embeddings.float()).chunk(2, dim=1)
        logvar = logvar.clamp(-10.0, 10.0)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        h = self.seed(z).view(-1, 128, 4, 4)
        return self.decode(h), mu, logvar


def vae_loss(
    head: VaeHead, embeddings: torch.Tensor, images: torch.Tensor, *, beta: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction (mean squared error against ``images [batch, 3, H, W]`` downsampled to the
    head's size) + ``beta`` x KL per latent dimension; returns (loss, terms)."""
    recon, mu, logvar = head(embeddings)
    target = F.interpolate(images.float(), size=(head.out_size, head.out_size), mode="area")
    reconstruction = F.mse_loss(recon.float(), target.contiguous())
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean()
    return reconstruction + beta * kl, {"recon": float(reconstruction.detach()),
                                        "kl": float(kl.detach())}


# ----- the criterion and the registry ---------------------------------------------------------


@dataclass
class MetricCriterion:
    """A PML loss with an optional miner; call with embeddings and labels.

    ``attrs`` are only used by ``triplet_levels``; ``negative_mask`` by every loss (for losses
    without a miner every pair is used, so known negatives are already included).
    """

    name: str
    loss: Any
    miner: Any | None = None
    needs_attrs: bool = False

    def __call__(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        *,
        attrs: torch.Tensor | None = None,
        negative_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``embeddings [batch, dim]``, ``labels [batch]`` -> scalar loss."""
        embeddings = embeddings.float()
        if self.needs_attrs:
            if attrs is None:
                attrs = torch.empty((len(labels), 0), dtype=torch.long, device=labels.device)
            return self.loss(embeddings, labels, attrs)  # type: ignore[no-any-return]
        indices = self.miner(embeddings, labels) if self.miner is not None else None
        if negative_mask is not None and bool(negative_mask.any()):
            if indices is None:
                pass  # all pairs are used: the known negatives are among them
            else:
                indices = add_known_negatives(tuple(indices), labels, negative_mask)
        return self.loss(embeddings, labels, indices)  # type: ignore[no-any-return]


def _triplet_semihard(margin: float = 0.2, **_: Any) -> MetricCriterion:
    dist = distances.CosineSimilarity()
    return MetricCriterion(
        "triplet_semihard",
        losses.TripletMarginLoss(margin=margin, distance=dist),
        miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard", distance=dist),
    )


def _triplet_batchhard(margin: float = 0.2, **_: Any) -> MetricCriterion:
    dist = distances.CosineSimilarity()
    return MetricCriterion(
        "triplet_batchhard",
        losses.TripletMarginLoss(margin=margin, distance=dist),
        miners.BatchHardMiner(distance=dist),
    )


def _circle(m: float = 0.4, gamma: float = 80.0, **_: Any) -> MetricCriterion:
    return MetricCriterion("circle", losses.CircleLoss(m=m, gamma=gamma), None)


def _multi_similarity(
    alpha: float = 2.0, beta: float = 50.0, base: float = 0.5, epsilon: float = 0.1, **_: Any
) -> MetricCriterion:
    return MetricCriterion(
        "multi_similarity",
        losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base),
        miners.MultiSimilarityMiner(epsilon=epsilon),
    )


def _triplet_levels(margin: float = 0.2, **_: Any) -> MetricCriterion:
    return MetricCriterion("triplet_levels", LevelTripletLoss(margin=margin), None, True)


LOSSES: dict[str, Callable[..., MetricCriterion]] = {
    "triplet_semihard": _triplet_semihard,
    "triplet_batchhard": _triplet_batchhard,
    "circle": _circle,
    "multi_similarity": _multi_similarity,
    "triplet_levels": _triplet_levels,
}


def build_criterion(name: str, **kwargs: Any) -> MetricCriterion:
    """The criterion registered as ``name`` (see :data:`LOSSES`)."""
    try:
        factory = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}") from None
    return factory(**kwargs)


__all__ = [
    "LOSSES",
    "MISSING",
    "AttributeHeads",
    "LevelTripletLoss",
    "MetricCriterion",
    "VaeHead",
    "add_known_negatives",
    "attribute_levels",
    "build_criterion",
    "masked_attribute_loss",
    "vae_loss",
]
