"""Training-loop helpers (hooks) of ``mmdet_sparse``."""
