"""The multitask terms trained beside the metric loss, each optional: multi-attribute level
triplets (``level_weight``), masked attribute heads (``multitask``) and a VAE head (``vae``).

The attribute heads are also kept in the checkpoint, for re-ranking (attribute agreement,
:mod:`ml.rerank.attributes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ml.losses import AttributeHeads, LevelTripletLoss, VaeHead, masked_attribute_loss, vae_loss
from ml.model import ATTRIBUTE_HEADS_KEY
from ml.train.config import TrainConfig


class AuxiliaryHeads:
    """The terms a run adds to its metric loss, built from its :class:`TrainConfig`.

    Args:
        cfg: the run's configuration (weights, margins, which terms are on).
        dim: the embedding size.
        attr_names: the attributes trained (:func:`ml.train.data.choose_attributes`).
        attr_vocab: attribute -> its values, in code order.
        device: where the heads' parameters live.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        dim: int,
        attr_names: Sequence[str],
        attr_vocab: Mapping[str, Sequence[str]],
        device: torch.device,
    ) -> None:
        self.cfg = cfg
        self.attr_vocab = attr_vocab
        self.level_loss = LevelTripletLoss(cfg.level_margin) if cfg.level_weight > 0 else None
        self.attributes: AttributeHeads | None = None
        if cfg.multitask and attr_names:
            cards = {n: max(1, len(attr_vocab[n])) for n in attr_names}
            self.attributes = AttributeHeads(dim, cards).to(device)
        self.vae: VaeHead | None = None
        if cfg.vae:
            if cfg.cached_views > 0:
                raise ValueError("the VAE head needs end-to-end training (cached_views = 0)")
            self.vae = VaeHead(dim, latent=cfg.vae_latent).to(device)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The optimiser's parameter groups of the heads that have parameters."""
        groups: list[dict[str, Any]] = []
        if self.attributes is not None:
            groups.append({"params": list(self.attributes.parameters()), "lr": lr, "name": "attr"})
        if self.vae is not None:
            groups.append({"params": list(self.vae.parameters()), "lr": lr, "name": "vae"})
        return groups

    def add_terms(
        self,
        loss: torch.Tensor,
        emb: torch.Tensor,
        labels: torch.Tensor,
        attrs: torch.Tensor,
        images: torch.Tensor,
        terms: dict[str, float],
    ) -> torch.Tensor:
        """``loss`` plus each weighted term; ``terms`` gets each term's value.

        Args:
            loss: the metric loss of the batch.
            emb: ``[batch, dim]`` float32 embeddings.
            labels: ``[batch]`` label codes.
            attrs: ``[batch, n_attributes]`` attribute codes (negative where unknown).
            images: the batch's network input (the VAE reconstructs it).
            terms: loss term name -> value, for the history.
        """
        cfg = self.cfg
        if self.level_loss is not None:
            lv = self.level_loss(emb, labels, attrs)
            terms["level"] = float(lv.detach())
            loss = loss + cfg.level_weight * lv
        if self.attributes is not None:
            al = masked_attribute_loss(self.attributes(emb), attrs)
            terms["attr"] = float(al.detach())
            loss = loss + cfg.attr_weight * al
        if self.vae is not None:
            vl, vae_terms = vae_loss(self.vae, emb, images, beta=cfg.vae_beta)
            terms.update({"vae": float(vl.detach()), **vae_terms})
            loss = loss + cfg.vae_weight * vl
        return loss

    def checkpoint_extra(self) -> dict[str, Any]:
        """What the checkpoint keeps of the heads: the attribute heads, for re-ranking."""
        heads = self.attributes
        if heads is None:
            return {}
        return {
            ATTRIBUTE_HEADS_KEY: {
                "names": list(heads.names),
                "values": {n: list(self.attr_vocab[n]) for n in heads.names},
                "weights": {n: w.detach().cpu() for n, w in
                            zip(heads.names, heads.weights, strict=True)},
                "scale": float(heads.scale),
            }
        }


__all__ = ["AuxiliaryHeads"]
