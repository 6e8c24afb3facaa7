from unittest import TestCase

from mmengine.registry import DefaultScope

import mmdet.models
import mmdet_sparse
from mmdet_sparse import registry


class TestRegistry(TestCase):

    def test_children_of_mmdet(self):
        from mmdet import registry as mmdet_registry
        for name in ('MODELS', 'DATASETS', 'TRANSFORMS', 'METRICS', 'HOOKS',
                     'VISUALIZERS', 'TASK_UTILS', 'OPTIMIZERS', 'LOOPS',
                     'PARAM_SCHEDULERS', 'RUNNERS', 'EVALUATOR',
                     'VISBACKENDS', 'LOG_PROCESSORS', 'MODEL_WRAPPERS',
                     'OPTIM_WRAPPERS', 'OPTIM_WRAPPER_CONSTRUCTORS',
                     'WEIGHT_INITIALIZERS', 'DATA_SAMPLERS',
                     'RUNNER_CONSTRUCTORS'):
            child = getattr(registry, name)
            self.assertEqual(child.scope, 'mmdet_sparse', msg=name)
            self.assertIs(child.parent, getattr(mmdet_registry, name))

    def test_resolution(self):
        mmdet_sparse.register_all_modules(init_default_scope=False)
        models = registry.MODELS
        self.assertIs(models.get('DIIHead'), mmdet_sparse.models.DIIHead)
        self.assertIs(models.get('SparseRoIHead'),
                      mmdet_sparse.models.SparseRoIHead)
        self.assertIs(models.get('mmdet.DIIHead'), mmdet.models.DIIHead)
        self.assertIs(models.get('ResNet'), mmdet.models.ResNet)

    def test_default_scope(self):
        mmdet_sparse.register_all_modules(init_default_scope=True)
        self.assertEqual(DefaultScope.get_current_instance().scope_name,
                         'mmdet_sparse')
