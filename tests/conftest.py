"""Suite-wide: tests marked `gpu` run only where Faiss sees a CUDA device.

Elsewhere they are skipped with the reason; with SKULENS_REQUIRE_GPU=1 they run anyway (and
fail), so a GPU runner cannot pass by skipping them. No Django here: tests/ml runs without it.
"""

from __future__ import annotations

import os

import pytest


def _gpus() -> int:
    from ml.index.gpu import gpu_count

    return gpu_count()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not marked:
        return
    if _gpus() > 0 or os.environ.get("SKULENS_REQUIRE_GPU"):
        return
    import faiss

    build = "faiss-gpu" if hasattr(faiss, "StandardGpuResources") else "faiss-cpu"
    reason = f"needs a CUDA device visible to Faiss ({build} {faiss.__version__} sees none)"
    if build == "faiss-cpu":
        reason += "; install the gpu extra: pip install -e '.[gpu]' (or make FAISS=gpu)"
    for item in marked:
        item.add_marker(pytest.mark.skip(reason=reason))
