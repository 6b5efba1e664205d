"""What the catalogue tells the apps built on it: the signals its services send.

The catalogue imports none of those apps (learning, matching, review: a contract in
pyproject.toml). An app that must follow a catalogue change connects a receiver to one of these
signals in its `receivers` module, which its `AppConfig.ready` imports. Every signal is sent
with ``sender=SKU``; receivers take ``**kwargs`` as Django asks, so arguments may be added.
"""

from __future__ import annotations

from django.dispatch import Signal

# SKUs or reference images changed in a way the search index must follow: a SKU created,
# edited, deactivated, reactivated or merged; images added or removed; an import applied.
# Sent after the transaction commits, once however many changes it held
# (`services.catalogue_changed_on_commit`), robustly: a receiver that fails is logged and
# cannot undo or fail the committed change. No arguments besides `sender`.
# Receivers: webapp.learning.receivers (queues the incremental index sync).
catalogue_changed = Signal()

# `source` (SKU) is being merged into `target` (SKU): sent inside `services.sku_merge`'s
# transaction, after the images have moved and before `source` is deactivated, so what the
# receivers move commits or rolls back with the merge. A receiver points its rows that name
# `source` at `target` and returns {MergeSummary field: rows moved}, e.g. {"candidates": 3}.
# Receivers: webapp.matching.receivers (candidates, decisions), webapp.review.receivers
# (bad cases, catalogue gaps).
sku_merged = Signal()
