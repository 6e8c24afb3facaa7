"""Train with the mmengine Runner, then evaluate what was saved."""
import copy
import logging
from typing import Optional, Tuple

from mmengine.config import Config
from mmengine.runner import Runner, find_latest_checkpoint


def train_then_test(cfg: Config,
                    vis_dir: Optional[str] = None) -> Tuple[dict, Runner,
                                                            Runner]:
    """Train ``cfg``, then test its last checkpoint as ``tools/test.py`` does.

    The test runs in a fresh Runner that loads the checkpoint: calling
    ``test()`` on the training Runner would run every hook's ``before_run``
    again, and ``EMAHook`` would then replace its averaged weights with a
    copy of the raw ones, so the test would not see what validation saw and
    what the checkpoint holds.

    Args:
        cfg (Config): A full training config with ``work_dir``, a test
            dataloader and evaluator.
        vis_dir (str, optional): Draw the test predictions into
            ``work_dir/<timestamp>/vis_dir`` (MMDetection's
            ``DetVisualizationHook``).

    Returns:
        tuple: the test metrics, the training Runner and the test Runner.
    """
    trainer = Runner.from_cfg(cfg)
    trainer.logger.setLevel(logging.INFO)
    trainer.train()
    checkpoint = find_latest_checkpoint(trainer.work_dir)
    if checkpoint is None:
        raise FileNotFoundError(
            f'training saved no checkpoint under {trainer.work_dir} '
            '(default_hooks.checkpoint)')
    test_cfg = copy.deepcopy(cfg)
    test_cfg.load_from = checkpoint
    test_cfg.resume = False
    if vis_dir is not None:
        test_cfg.default_hooks.visualization.update(
            draw=True, test_out_dir=vis_dir)
    tester = Runner.from_cfg(test_cfg)
    tester.logger.setLevel(logging.INFO)
    return tester.test(), trainer, tester
