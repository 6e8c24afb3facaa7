"""Sparse R-CNN for MMDetection 3.x.

Importing the package registers its modules under the ``mmdet_sparse`` scope
and MMDetection's modules in MMDetection's registries, so a config with
``custom_imports=dict(imports=['mmdet_sparse'])`` and
``default_scope='mmdet_sparse'`` works with MMDetection's own tools
(``mim train/test mmdet``), resuming included.
"""
from .engine import allow_runner_checkpoints
from .utils import register_all_modules

register_all_modules(init_default_scope=False)
# Runner checkpoints (resume, test, inference) load under torch's
# ``weights_only`` default: allow exactly the non-tensor types they hold.
allow_runner_checkpoints()

__version__ = '0.1.0'

__all__ = ['register_all_modules', '__version__']
