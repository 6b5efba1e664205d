"""SKU Lens machine-learning library: images -> embeddings -> Faiss index -> per-SKU ranking.

Plain PyTorch/Faiss; never imports Django or Celery (``tests/ml/test_no_django.py`` proves it).
Submodules are imported explicitly (``from ml import embed``) so that ``import ml`` stays cheap.
"""

__all__: list[str] = []
