"""ResumableEpochBasedTrainLoop: resuming an iteration checkpoint saved in
the middle of an epoch continues at the next batch, with the losses, data
order and weights of a run that never stopped."""
import glob
import os.path as osp
import tempfile
from unittest import TestCase

import torch
from mmengine.config import Config
from support.tool_runs import iteration_run, loss_records, losses, run_tool
from support.tool_runs import train_command
from support.toy_runner import ToyPoints, toy_runner

from support.helpers import CONFIG_DIR
from mmdet_sparse.engine import ResumableEpochBasedTrainLoop
from mmdet_sparse.engine.loops import POSITION_KEY
from mmdet_sparse.registry import LOOPS

EVERY_ITER = dict(by_epoch=False, interval=1)


class TestResumableEpochBasedTrainLoop(TestCase):

    @classmethod
    def setUpClass(cls):
        # An uninterrupted run: 2 epochs of 5 batches, a checkpoint after
        # every iteration.
        cls.tmp = tempfile.TemporaryDirectory()
        cls.full_dir = osp.join(cls.tmp.name, 'full')
        runner = toy_runner(cls.full_dir, checkpoint=EVERY_ITER)
        runner.train()
        cls.full = runner.recorder.iters
        cls.full_weights = runner.model.state_dict()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def _resume(self, name, ckpt, **kwargs):
        ToyPoints.loaded.clear()
        runner = toy_runner(
            osp.join(self.tmp.name, name), checkpoint=EVERY_ITER,
            resume=True, load_from=osp.join(self.full_dir, ckpt), **kwargs)
        runner.train()
        return runner

    def _assert_same_as_full(self, runner, first_iter):
        self.assertEqual(runner.recorder.iters, self.full[first_iter - 1:])
        for key, value in runner.model.state_dict().items():
            self.assertTrue(torch.equal(value, self.full_weights[key]),
                            msg=key)

    def test_every_config_uses_it(self):
        for path in sorted(glob.glob(osp.join(CONFIG_DIR, '*.py'))):
            cfg = Config.fromfile(path)
            self.assertIs(LOOPS.get(cfg.train_cfg.type),
                          ResumableEpochBasedTrainLoop,
                          msg=osp.basename(path))

    def test_resume_in_the_middle_of_an_epoch(self):
        # iter_7: batches 0 and 1 of the second epoch are done.
        runner = self._resume('mid', 'iter_7.pth')
        self._assert_same_as_full(runner, 8)
        self.assertEqual([it[2] for it in runner.recorder.iters], [2, 3, 4])
        self.assertEqual(runner.iter, 10)
        # The two skipped batches were never loaded.
        self.assertEqual(len(ToyPoints.loaded), 6)
        self.assertEqual(sorted(ToyPoints.loaded),
                         sorted(i for it in self.full[7:] for i in it[3]))

    def test_resume_after_the_last_batch_of_an_epoch(self):
        # iter_5 was saved after the last batch of epoch 1, before the
        # epoch's end (lr step, epoch checkpoint): both still happen.
        runner = self._resume('end', 'iter_5.pth')
        self._assert_same_as_full(runner, 6)
        self.assertEqual(runner.recorder.epochs_ended, [0, 1])
        self.assertAlmostEqual(
            runner.optim_wrapper.param_groups[0]['lr'], 0.01)

    def test_checkpoint_without_the_position(self):
        """A checkpoint of mmengine's loop: the position in the epoch is
        derived from the iteration."""
        ckpt = torch.load(osp.join(self.full_dir, 'iter_7.pth'),
                          weights_only=True)
        del ckpt['message_hub']['runtime_info'][POSITION_KEY]
        torch.save(ckpt, osp.join(self.full_dir, 'old_iter_7.pth'))
        runner = self._resume('old', 'old_iter_7.pth')
        self._assert_same_as_full(runner, 8)

    def test_fewer_batches_than_the_checkpoint_is_an_error(self):
        with self.assertRaisesRegex(ValueError,
                                    'after batch 2 of epoch 2.*only 1 '
                                    'batches per epoch'):
            self._resume('small', 'iter_7.pth', num=2)

    def test_tools_resume_mid_epoch_like_the_uninterrupted_run(self):
        """tools/train.py --resume iter_6.pth (epoch 2 of 2, after 2 of 4
        batches) on the tiny shapes config: 2 more iterations (not 4), with
        the losses and final weights of the uninterrupted run."""
        config, ref_dir = iteration_run()
        work_dir = osp.join(self.tmp.name, 'tools_mid')
        run_tool(train_command(config, work_dir, '--resume',
                               osp.join(ref_dir, 'iter_6.pth')))
        ref = losses(ref_dir)
        records = loss_records(work_dir)
        self.assertEqual([step for step, _ in records], [7, 8])
        for step, loss in records:
            self.assertAlmostEqual(loss, ref[step],
                                   delta=1e-6 * abs(ref[step]),
                                   msg=f'iteration {step}')
        self.assertFalse(osp.exists(osp.join(work_dir, 'iter_9.pth')))
        final = torch.load(osp.join(work_dir, 'iter_8.pth'),
                           weights_only=True)['state_dict']
        expected = torch.load(osp.join(ref_dir, 'iter_8.pth'),
                              weights_only=True)['state_dict']
        for key, value in expected.items():
            self.assertTrue(torch.equal(final[key], value), msg=key)
