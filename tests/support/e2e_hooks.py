"""A hook for the end-to-end tests: records each process's first losses."""
import json
import os.path as osp

from mmengine.dist import get_rank
from mmengine.hooks import Hook

from mmdet_sparse.registry import HOOKS


@HOOKS.register_module()
class FirstLossDumpHook(Hook):
    """Write the first iteration's rank-local losses to
    ``work_dir/first_loss_rank{rank}.json``."""

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if runner.iter != 0:
            return
        values = {k: float(v) for k, v in outputs.items()}
        path = osp.join(runner.work_dir, f'first_loss_rank{get_rank()}.json')
        with open(path, 'w') as f:
            json.dump(values, f)
