"""PKBatchSampler: batch composition checked by counting."""

from __future__ import annotations

from collections import Counter

import pytest

from ml.sampling import PKBatchSampler


def _dataset(n_labels: int = 10, photos: int = 7, with_catalogue: bool = True):
    labels, roles, cats = [], [], []
    for lab in range(n_labels):
        if with_catalogue:
            labels.append(f"L{lab}")
            roles.append("catalogue")
            cats.append(f"C{lab % 3}")
        for _ in range(photos):
            labels.append(f"L{lab}")
            roles.append("photo")
            cats.append(f"C{lab % 3}")
    return labels, roles, cats


def test_p_by_k_with_catalogue_in_every_slot() -> None:
    labels, roles, _ = _dataset()
    s = PKBatchSampler(labels, roles, classes_per_batch=4, samples_per_class=4, seed=3)
    batches = list(s)
    assert len(batches) == len(s) == len(labels) // 16
    for batch in batches:
        assert len(batch) == 16
        per_label = Counter(labels[i] for i in batch)
        assert len(per_label) == 4 and set(per_label.values()) == {4}
        catalogue = Counter(labels[i] for i in batch if roles[i] == "catalogue")
        assert catalogue == Counter({lab: 1 for lab in per_label})
        # photos of one label are distinct inside a batch (each label has 7 >= 3 photos)
        photos = [i for i in batch if roles[i] == "photo"]
        assert len(photos) == len(set(photos))


def test_class_balance_over_an_epoch() -> None:
    # Unequal photo counts: labels are still drawn equally often.
    labels = ["a"] * 40 + ["b"] * 5 + ["c"] * 5 + ["d"] * 10
    s = PKBatchSampler(labels, None, classes_per_batch=2, samples_per_class=2, batches_per_epoch=40)
    counts = Counter(labels[i] for batch in s for i in batch)
    assert set(counts.values()) == {40}  # 40 batches x 2 labels x 2 items / 4 labels


def test_photos_cycle_before_repeating() -> None:
    labels = ["a"] * 6 + ["b"] * 6
    s = PKBatchSampler(labels, None, classes_per_batch=2, samples_per_class=3, batches_per_epoch=2)
    seen = Counter(i for batch in s for i in batch)
    assert set(seen) == set(range(12)) and set(seen.values()) == {1}


def test_seeded_and_epoch_dependent() -> None:
    labels, roles, _ = _dataset()
    a = PKBatchSampler(labels, roles, classes_per_batch=4, samples_per_class=3, seed=7)
    b = PKBatchSampler(labels, roles, classes_per_batch=4, samples_per_class=3, seed=7)
    a.set_epoch(2)
    b.set_epoch(2)
    first = list(a)
    assert first == list(b)
    a.set_epoch(3)
    assert list(a) != first


def test_single_category_batches() -> None:
    labels, roles, cats = _dataset(n_labels=12)  # 4 labels in each of 3 categories
    s = PKBatchSampler(
        labels,
        roles,
        classes_per_batch=4,
        samples_per_class=2,
        categories=cats,
        single_category=True,
        batches_per_epoch=30,
        seed=1,
    )
    for batch in s:
        assert len({cats[i] for i in batch}) == 1


def test_known_negative_labels_join_the_batch() -> None:
    labels, roles, _ = _dataset(n_labels=20, photos=3, with_catalogue=False)
    negatives = [["L19"] if lab == "L0" else [] for lab in labels]
    s = PKBatchSampler(
        labels,
        roles,
        classes_per_batch=4,
        samples_per_class=3,
        negatives=negatives,
        batches_per_epoch=50,
        seed=0,
    )
    with_l0 = [b for b in s if any(labels[i] == "L0" for i in b)]
    assert with_l0
    for batch in with_l0:
        assert any(labels[i] == "L19" for i in batch)
        assert len(batch) == 12


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        PKBatchSampler(["a", "b"], None, samples_per_class=1)
    with pytest.raises(ValueError):
        PKBatchSampler(["a", "a"], None)
    with pytest.raises(ValueError):
        PKBatchSampler(["a", "b"], None, single_category=True)
