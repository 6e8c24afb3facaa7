"""Sparse R-CNN for MMDetection 3.x.

Importing the package registers its modules under the ``mmdet_sparse`` scope
and MMDetection's modules in MMDetection's registries, so a config with
``custom_imports=dict(imports=['mmdet_sparse'])`` and
``default_scope='mmdet_sparse'`` works with MMDetection's own tools
(``mim train/test mmdet``), resuming included.

On a deployment host without the training stack (torch, mmengine, mmcv,
mmdet: ``requirements/deploy.txt``) nothing is registered and only
:mod:`mmdet_sparse.deploy`'s runtime is usable (``TRAINING_STACK`` is
False).
"""
# The packages whose absence makes this a deployment host.
_STACK = ('torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet')

try:
    import mmdet  # noqa: F401  (imports torch, mmengine and mmcv)
except ModuleNotFoundError as exc:
    if (exc.name or '').split('.')[0] not in _STACK:
        raise
    TRAINING_STACK = False
else:
    TRAINING_STACK = True

if TRAINING_STACK:
    from .engine import allow_runner_checkpoints
    from .engine.url_weights import install_safe_url_loaders
    from .utils import register_all_modules

    register_all_modules(init_default_scope=False)
    # Runner checkpoints (resume, test, inference) load under torch's
    # ``weights_only`` default: allow exactly the non-tensor types they hold.
    allow_runner_checkpoints()
    # Backbone weights named by URL scheme (torchvision://, open-mmlab://,
    # http(s)://, ...) load from torch hub's cache under ``weights_only``.
    install_safe_url_loaders()

__version__ = '0.1.0'

__all__ = ['register_all_modules', 'TRAINING_STACK', '__version__']
