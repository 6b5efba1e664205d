"""Class-balanced P x K batch sampling for metric learning.

Every batch holds ``classes_per_batch`` (P) distinct labels with ``samples_per_class`` (K)
items each, so every anchor has positives and the miner has many negatives (seed 002).

* **Catalogue first:** when a label has catalogue images (``role == "catalogue"``), one of its
  K slots is always a catalogue image, because photo -> catalogue is the retrieval we serve.
* **Class balance:** labels are drawn from a shuffled cycle, so over an epoch each label
  appears equally often however many photos it has; photos of a label are also drawn from a
  shuffled cycle, so all of them are seen before any repeats.
* **Known-wrong labels:** when a drawn photo lists ``negatives`` (candidates a reviewer
  rejected), those labels join the batch while there is room, so the loss can use them as
  hard negatives.
* **Single-category batches** (seed 002): labels are drawn category by category, so a batch
  holds as few categories as possible (exactly one when a category has >= P labels).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler

CATALOGUE = "catalogue"


class _Cycle:
    """Endless shuffled cycle over a list (reshuffled on each pass)."""

    def __init__(self, items: Sequence[int], rng: random.Random) -> None:
        self.items = list(items)
        self.rng = rng
        self.queue: list[int] = []

    def next(self) -> int:
        if not self.queue:
            self.queue = self.items[:]
            self.rng.shuffle(self.queue)
        return self.queue.pop()

    def take(self, n: int) -> list[int]:
        """``n`` distinct items (requires ``n <= len(items)``); a pass boundary skips items
        already taken rather than repeating them."""
        out: list[int] = []
        while len(out) < n:
            item = self.next()
            if item not in out:
                out.append(item)
        return out


def _label_stream(groups: Sequence[Sequence[int]], rng: random.Random) -> Iterator[int]:
    """Endless passes; each pass shuffles the groups and the members inside each group, and
    yields groups contiguously (one group per label = plain shuffled passes)."""
    while True:
        order = list(groups)
        rng.shuffle(order)
        for group in order:
            members = list(group)
            rng.shuffle(members)
            yield from members


class PKBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices, one list per batch of P labels x K items.

    Args:
        labels: ``[n]`` label of each dataset item.
        roles: ``[n]`` ``"catalogue"`` or ``"photo"`` (anything else counts as photo); None =
            all photos.
        classes_per_batch: P; capped at the number of labels.
        samples_per_class: K (>= 2 so every anchor has a positive).
        categories: ``[n]`` category of each item (needed for ``single_category``).
        negatives: ``[n]`` labels known to be wrong for each item (may be empty).
        single_category: draw the labels of a batch category by category.
        batches_per_epoch: default ``len(labels) // (P * K)`` (at least 1).
        seed: base seed; epoch ``e`` uses ``seed + e`` so runs repeat exactly.
    """

    def __init__(
        self,
        labels: Sequence[str | int],
        roles: Sequence[str] | None = None,
        *,
        classes_per_batch: int = 16,
        samples_per_class: int = 4,
        categories: Sequence[str | None] | None = None,
        negatives: Sequence[Sequence[str | int]] | None = None,
        single_category: bool = False,
        batches_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        if samples_per_class < 2:
            raise ValueError("samples_per_class must be >= 2 (anchors need a positive)")
        if single_category and categories is None:
            raise ValueError("single_category needs categories")
        self.labels = list(labels)
        n = len(self.labels)
        self.roles = list(roles) if roles is not None else ["photo"] * n
        self.negatives = [list(x) for x in negatives] if negatives is not None else [[]] * n
        if len(self.roles) != n or len(self.negatives) != n:
            raise ValueError("labels, roles and negatives must have the same length")
        self.label_set = sorted(set(self.labels), key=str)
        self.P = min(classes_per_batch, len(self.label_set))
        if self.P < 2:
            raise ValueError("need at least 2 labels to form negatives")
        self.K = samples_per_class
        self.single_category = single_category
        self.seed = seed
        self.epoch = 0
        self.catalogue: dict[str | int, list[int]] = {lab: [] for lab in self.label_set}
        self.photos: dict[str | int, list[int]] = {lab: [] for lab in self.label_set}
        for i, (lab, role) in enumerate(zip(self.labels, self.roles, strict=True)):
            (self.catalogue if role == CATALOGUE else self.photos)[lab].append(i)
        self.category_of: dict[str | int, str] = {}
        if categories is not None:
            for lab, cat in zip(self.labels, categories, strict=True):
                self.category_of.setdefault(lab, str(cat or ""))
        self.batches_per_epoch = batches_per_epoch or max(1, n // (self.P * self.K))

    def __len__(self) -> int:
        return self.batches_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random stream (call before iterating, like DistributedSampler)."""
        self.epoch = epoch

    def _groups(self) -> list[list[int]]:
        if not self.single_category:
            return [[li] for li in range(len(self.label_set))]
        by_cat: dict[str, list[int]] = {}
        for li, lab in enumerate(self.label_set):
            by_cat.setdefault(self.category_of.get(lab, ""), []).append(li)
        return [by_cat[c] for c in sorted(by_cat)]

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        stream = _label_stream(self._groups(), rng)
        deferred: list[int] = []  # drawn while already in the batch: first in line next time
        photo_cycles = {lab: _Cycle(idx, rng) for lab, idx in self.photos.items()}
        index_of = {lab: i for i, lab in enumerate(self.label_set)}
        for _ in range(self.batches_per_epoch):
            chosen: dict[str | int, list[int]] = {}  # label -> its K item indices
            forced: list[str | int] = []  # rejected-candidate labels waiting for a slot
            protected: set[str | int] = set()  # labels that brought or are known negatives
            carry, deferred = deferred, []
            while len(chosen) < self.P:
                if forced:
                    lab = forced.pop(0)
                    protected.add(lab)
                else:
                    li = carry.pop(0) if carry else next(stream)
                    lab = self.label_set[li]
                    if lab in chosen:
                        deferred.append(li)
                        continue
                if lab in chosen:
                    continue
                chosen[lab] = self._items_for(lab, photo_cycles, rng)
                wanted = self._wanted_negatives(chosen[lab], index_of)
                if wanted:
                    protected.add(lab)
                forced.extend(x for x in wanted if x not in chosen and x not in forced)
            # Batch full with known negatives still waiting: they replace unprotected labels,
            # which go back to the front of the line.
            for lab in forced:
                victims = [v for v in chosen if v not in protected]
                if lab in chosen or not victims:
                    continue
                del chosen[victims[-1]]
                deferred.insert(0, index_of[victims[-1]])
                chosen[lab] = self._items_for(lab, photo_cycles, rng)
                protected.add(lab)
            deferred = carry + deferred
            yield [i for items in chosen.values() for i in items]
        self.epoch += 1

    def _wanted_negatives(
        self, items: Sequence[int], index_of: dict[str | int, int]
    ) -> list[str | int]:
        out: list[str | int] = []
        for i in items:
            out.extend(x for x in self.negatives[i] if x in index_of and x not in out)
        return out

    def _items_for(
        self, label: str | int, photo_cycles: dict[str | int, _Cycle], rng: random.Random
    ) -> list[int]:
        """K item indices of one label: one catalogue image when it has any, then photos."""
        out: list[int] = []
        cat = self.catalogue[label]
        if cat:
            out.append(cat[rng.randrange(len(cat))])
        photos = self.photos[label]
        need = self.K - len(out)
        if photos:
            cycle = photo_cycles[label]
            if len(photos) >= need:
                out.extend(cycle.take(need))
            else:  # fewer photos than slots: repeat some (augmentation makes them differ)
                out.extend(cycle.next() for _ in range(need))
        else:  # catalogue-only label: repeat its images (augmentation makes them differ)
            out.extend(cat[rng.randrange(len(cat))] for _ in range(need))
        return out


__all__ = ["CATALOGUE", "PKBatchSampler"]
