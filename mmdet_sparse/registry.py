"""Registries of ``mmdet_sparse``.

One child registry per mmengine registry, all with
``scope='mmdet_sparse'`` and parented to MMDetection's registries: a name
registered here (``SparseRoIHead``, ``DIIHead``, ...) resolves to this
package under the ``mmdet_sparse`` scope (``CocoDataset`` too: MMDetection's
with a report of what it drops), and every other name (``ResNet``,
``CocoMetric``, ...) falls through to MMDetection and then mmengine.
MMDetection's own classes stay reachable with an explicit scope, e.g.
``type='mmdet.DIIHead'``.
"""
from mmdet import registry as mmdet_registry
from mmengine.registry import Registry

SCOPE = 'mmdet_sparse'


def _child(name: str, parent: Registry, location: str = '') -> Registry:
    """A registry in scope ``mmdet_sparse`` whose misses go to ``parent``."""
    locations = [f'{SCOPE}.{location}'] if location else []
    return Registry(name, parent=parent, scope=SCOPE, locations=locations)


RUNNERS = _child('runner', mmdet_registry.RUNNERS, 'engine')
RUNNER_CONSTRUCTORS = _child('runner constructor',
                             mmdet_registry.RUNNER_CONSTRUCTORS, 'engine')
LOOPS = _child('loop', mmdet_registry.LOOPS, 'engine')
HOOKS = _child('hook', mmdet_registry.HOOKS, 'engine')
LOG_PROCESSORS = _child('log_processor', mmdet_registry.LOG_PROCESSORS,
                        'engine')
OPTIMIZERS = _child('optimizer', mmdet_registry.OPTIMIZERS, 'engine')
OPTIM_WRAPPERS = _child('optim_wrapper', mmdet_registry.OPTIM_WRAPPERS,
                        'engine')
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer constructor',
                                    mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS,
                                    'engine')
PARAM_SCHEDULERS = _child('parameter scheduler',
                          mmdet_registry.PARAM_SCHEDULERS, 'engine')
DATASETS = _child('dataset', mmdet_registry.DATASETS, 'datasets')
DATA_SAMPLERS = _child('data sampler', mmdet_registry.DATA_SAMPLERS,
                       'datasets')
TRANSFORMS = _child('transform', mmdet_registry.TRANSFORMS, 'datasets')
MODELS = _child('model', mmdet_registry.MODELS, 'models')
MODEL_WRAPPERS = _child('model_wrapper', mmdet_registry.MODEL_WRAPPERS,
                        'models')
WEIGHT_INITIALIZERS = _child('weight initializer',
                             mmdet_registry.WEIGHT_INITIALIZERS, 'models')
TASK_UTILS = _child('task util', mmdet_registry.TASK_UTILS, 'models')
METRICS = _child('metric', mmdet_registry.METRICS)
EVALUATOR = _child('evaluator', mmdet_registry.EVALUATOR)
VISUALIZERS = _child('visualizer', mmdet_registry.VISUALIZERS)
VISBACKENDS = _child('vis_backend', mmdet_registry.VISBACKENDS)
