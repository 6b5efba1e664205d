"""Losses: level mining and known negatives recomputed with loops; registry smoke tests."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ml.losses import (
    LOSSES,
    MISSING,
    AttributeHeads,
    LevelTripletLoss,
    add_known_negatives,
    attribute_levels,
    build_criterion,
    masked_attribute_loss,
)


def _batch(seed: int = 0, n: int = 12, dim: int = 8):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(n, dim, generator=g), dim=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4][:n])
    # attributes: category, brand (MISSING for some rows)
    attrs = torch.tensor(
        [
            [0, 0],
            [0, 0],
            [0, 0],
            [0, 1],
            [0, 1],
            [0, 1],
            [1, MISSING],
            [1, MISSING],
            [0, 0],
            [0, 0],
            [1, 2],
            [1, 2],
        ][:n]
    )
    return emb, labels, attrs


def _level_loop(labels: list[int], attrs: list[list[int]]) -> list[list[float]]:
    n = len(labels)
    out = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if labels[i] == labels[j]:
                out[i][j] = 1.0
                continue
            known = [k for k in range(len(attrs[i])) if MISSING not in (attrs[i][k], attrs[j][k])]
            match = sum(attrs[i][k] == attrs[j][k] for k in known)
            out[i][j] = min(0.99, match / len(known)) if known else 0.0
    return out


def test_attribute_levels_match_loops() -> None:
    _, labels, attrs = _batch()
    got = attribute_levels(labels, attrs)
    want = torch.tensor(_level_loop(labels.tolist(), attrs.tolist()))
    assert torch.allclose(got, want)
    # near miss (same category and brand, other SKU) above far miss (nothing shared)
    assert got[0, 8] > got[0, 3] > got[0, 10] == 0


def test_level_triplet_loss_matches_loops() -> None:
    emb, labels, attrs = _batch()
    margin = 0.3
    got = LevelTripletLoss(margin)(emb, labels, attrs)
    lev = _level_loop(labels.tolist(), attrs.tolist())
    sim = (emb @ emb.T).tolist()
    total, active = 0.0, 0
    n = len(labels)
    for a in range(n):
        for p in range(n):
            for q in range(n):
                if a in (p, q) or lev[a][p] <= lev[a][q]:
                    continue
                v = max(0.0, sim[a][q] - sim[a][p] + margin * (lev[a][p] - lev[a][q]))
                if v > 0:
                    total += v
                    active += 1
    assert active > 0
    assert math.isclose(float(got), total / active, rel_tol=1e-5)


def test_level_loss_is_zero_when_order_is_respected() -> None:
    # Embeddings laid out so that cosine follows the levels with room to spare.
    labels = torch.tensor([0, 0, 1, 2])
    attrs = torch.tensor([[0], [0], [0], [1]])
    emb = F.normalize(torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0.6, 0.8, 0], [0, 0, 1.0]]), dim=1)
    loss = LevelTripletLoss(0.2)(emb, labels, attrs)
    assert float(loss) == 0.0


def test_known_negatives_added_to_pairs_and_triplets() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[0, 4] = True  # label 2 is a rejected candidate for item 0
    mask[1, 1] = True  # same label: ignored
    empty = torch.empty(0, dtype=torch.long)
    a1, p, a2, n = add_known_negatives(
        (empty, empty, torch.tensor([2]), torch.tensor([3])), labels, mask
    )
    assert set(zip(a2.tolist(), n.tolist(), strict=True)) == {(2, 3), (0, 4)}
    a, p, n = add_known_negatives(
        (torch.tensor([2]), torch.tensor([3]), torch.tensor([0])), labels, mask
    )
    # every positive of anchor 0 (only item 1) is paired with the known negative 4
    assert set(zip(a.tolist(), p.tolist(), n.tolist(), strict=True)) == {(2, 3, 0), (0, 1, 4)}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_registered_loss_trains(name: str) -> None:
    emb, labels, attrs = _batch(seed=1)
    emb = emb.clone().requires_grad_(True)
    crit = build_criterion(name)
    mask = torch.zeros(len(labels), len(labels), dtype=torch.bool)
    mask[0, 6] = mask[6, 0] = True
    loss = crit(emb, labels, attrs=attrs, negative_mask=mask)
    assert loss.ndim == 0 and math.isfinite(float(loss.detach()))
    loss.backward()
    assert emb.grad is not None and float(emb.grad.abs().sum()) > 0


def test_known_negatives_reach_the_miner_output() -> None:
    # With a miner that picks nothing (a huge epsilon would pick everything, so use a tiny
    # MultiSimilarity epsilon on well separated data), the known pair alone makes a loss.
    labels = torch.tensor([0, 0, 1, 1])
    emb = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]]), dim=1)
    crit = build_criterion("triplet_semihard", margin=0.1)
    assert float(crit(emb, labels)) == 0.0
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, 2] = True
    # Still zero: the known negative is far. Now make it close to item 0:
    emb2 = F.normalize(torch.tensor([[1.0, 0.0], [0.7, 0.7], [0.99, 0.1], [0.0, 1.0]]), dim=1)
    base = float(crit(emb2, labels))
    with_known = float(crit(emb2, labels, negative_mask=mask))
    assert with_known >= base and with_known > 0


def test_masked_attribute_loss_matches_loop() -> None:
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(5, 3, generator=g), torch.randn(5, 4, generator=g)]
    attrs = torch.tensor([[0, MISSING], [2, 1], [MISSING, 3], [1, MISSING], [0, 0]])
    got = masked_attribute_loss(logits, attrs)
    terms = []
    for k, lg in enumerate(logits):
        rows = [i for i in range(5) if attrs[i, k] != MISSING]
        ce = [-F.log_softmax(lg[i], dim=0)[attrs[i, k]] for i in rows]
        terms.append(sum(ce) / len(ce))
    assert math.isclose(float(got), float(sum(terms) / len(terms)), rel_tol=1e-5)
    # an attribute missing everywhere is skipped, not NaN
    all_missing = torch.full((5, 2), MISSING)
    all_missing[:, 0] = attrs[:, 0].clamp(min=0)
    assert math.isfinite(float(masked_attribute_loss(logits, all_missing)))


def test_attribute_heads_shapes() -> None:
    heads = AttributeHeads(8, {"category": 3, "brand": 5})
    out = heads(F.normalize(torch.randn(4, 8), dim=1))
    assert [tuple(o.shape) for o in out] == [(4, 3), (4, 5)]


def test_unknown_loss_name() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        build_criterion("nope")


def test_vae_head_reconstructs_and_trains_the_embedding() -> None:
    from ml.losses import VaeHead, vae_loss

    torch.manual_seed(0)
    head = VaeHead(16, latent=8, out_size=16)
    embeddings = torch.nn.functional.normalize(torch.randn(4, 16), dim=1).requires_grad_(True)
    images = torch.rand(4, 3, 64, 64)
    recon, mu, logvar = head(embeddings)
    assert recon.shape == (4, 3, 16, 16) and mu.shape == logvar.shape == (4, 8)
    loss, terms = vae_loss(head, embeddings, images, beta=0.5)
    assert set(terms) == {"recon", "kl"} and loss.item() > 0
    loss.backward()
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0
    # The loss falls as the head learns to reconstruct a fixed picture.
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        optimiser.zero_grad()
        value, _ = vae_loss(head, embeddings.detach(), images, beta=0.01)
        value.backward()
        optimiser.step()
        first = first if first is not None else float(value)
    assert float(value) < first * 0.7
    with pytest.raises(ValueError):
        VaeHead(16, out_size=12)
