"""Sparse R-CNN for MMDetection 3.x.

Importing the package registers its modules under the ``mmdet_sparse`` scope
and MMDetection's modules in MMDetection's registries, so a config with
``custom_imports=dict(imports=['mmdet_sparse'])`` and
``default_scope='mmdet_sparse'`` works with MMDetection's own tools
(``mim train/test mmdet``), resuming included.
"""
from .engine import allow_runner_checkpoints
from .engine.url_weights import install_safe_url_loaders
from .utils import register_all_modules

register_all_modules(init_default_scope=False)
# Runner checkpoints (resume, test, inference) load under torch's
# ``weights_only`` default: allow exactly the non-tensor types they hold.
allow_runner_checkpoints()
# Backbone weights named by URL scheme (torchvision://, open-mmlab://,
# http(s)://, ...) load from torch hub's cache under ``weights_only`` too.
install_safe_url_loaders()

__version__ = '0.1.0'

__all__ = ['register_all_modules', '__version__']
