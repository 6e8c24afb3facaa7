"""Tests of ``benchmarks/gpu_check.py`` on the CPU: the rows a CPU can check
pass, the GPU-only rows are skipped with their reasons, and a failing row
(or part of a row) is recorded with its exception and makes the exit
status non-zero without stopping the other rows."""
import json
import os
import os.path as osp
import tempfile
from unittest import TestCase, mock

from support.helpers import load_script


def _load_tool():
    return load_script('benchmarks', 'gpu_check.py', name='gpu_check')


def _run(tool, out: str, *args: str):
    """``main`` on the CPU (environment restored afterwards); the exit
    status and the JSON report."""
    with mock.patch.dict(os.environ):
        status = tool.main(['--device', 'cpu', '--out', out, *args])
    with open(out) as f:
        return status, json.load(f)


class TestGpuCheckOnCPU(TestCase):
    """One CPU run of every row (a few seconds each), and runs with a row
    made to fail."""

    @classmethod
    def setUpClass(cls):
        cls.tool = _load_tool()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.status, cls.report = _run(
            cls.tool, osp.join(cls.tmp.name, 'work_dirs', 'gpu_check.json'))
        cls.rows = {r['name']: r for r in cls.report['rows']}

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def _parts(self, row: str) -> dict:
        return {p['name']: p for p in self.rows[row]['parts']}

    def test_report(self):
        self.assertEqual(list(self.rows), list(self.tool.ROWS))
        env = self.report['env']
        self.assertEqual(env['device'], 'cpu')
        for key in ('torch', 'mmcv', 'mmdet', 'mmengine',
                    'mmcv_compiled_cuda'):
            self.assertTrue(env[key], msg=key)
        for row in self.report['rows']:
            self.assertIn(row['status'], ('ok', 'FAIL', 'skipped'))
            self.assertGreaterEqual(row['seconds'], 0)
        self.assertEqual(self.status, 0, msg=self.report['failed'])
        self.assertTrue(self.report['ok'])

    def test_mmcv_ops(self):
        parts = self._parts('mmcv_ops')
        self.assertEqual(parts['compiled CUDA version']['status'], 'ok')
        roi_align = parts['RoIAlign (all configs)']
        self.assertEqual(roi_align['status'], 'ok', msg=roi_align['detail'])
        self.assertLessEqual(roi_align['numbers']['forward_rel'], 1e-5)
        self.assertLessEqual(roi_align['numbers']['backward_rel'], 1e-5)
        # no CPU kernels in mmcv: skipped, saying so, never FAIL
        for name in ('sigmoid focal loss (FocalLoss on CUDA)',
                     'MultiScaleDeformableAttention (ViT-Adapter)'):
            self.assertEqual(parts[name]['status'], 'skipped', msg=name)
            self.assertIn('no CPU kernel', parts[name]['detail'])
        self.assertEqual(self.rows['mmcv_ops']['status'], 'ok')

    def test_parity(self):
        row = self.rows['parity']
        self.assertEqual(row['status'], 'ok', msg=row['detail'])
        numbers = row['numbers']
        for key in ('losses_rel', 'grads_rel', 'feat_grads_rel',
                    'scores_rel', 'boxes_rel'):
            self.assertLessEqual(numbers[key], 1e-4, msg=key)
        self.assertEqual(numbers['labels_differ'], 0)
        self.assertEqual(numbers['stages'], 6)
        self.assertEqual(numbers['detections'], 2 * numbers['proposals'])

    def test_fp16_levels(self):
        parts = self._parts('amp')
        levels = parts['fp16 levels: sparse_rcnn_r18_fpn_shapes_demo']
        self.assertEqual(levels['status'], 'ok', msg=levels['detail'])
        self.assertEqual(levels['numbers']['mismatches'], 0)
        self.assertGreater(levels['numbers']['rois'], 2000)
        step = parts['fp16 AMP step: sparse_rcnn_r18_fpn_shapes_demo']
        self.assertEqual(step['status'], 'skipped')
        self.assertIn('needs CUDA', step['detail'])
        # the same code ran on the CPU with bfloat16 autocast
        self.assertEqual(step['numbers']['mismatches'], 0)
        self.assertEqual(step['numbers']['optim_wrapper'],
                         'CPUBFloat16OptimWrapper')

    def test_fp16_levels_catch_float16_rois(self):
        """The level check fails for MMDetection's ``SingleRoIExtractor``,
        which maps the RoIs in the features' dtype."""
        import torch
        config = osp.join(self.tmp.name, 'single_roi_extractor.py')
        with open(config, 'w') as f:
            f.write(f"_base_ = '{self.tool.R50_CONFIG}'\n"
                    'model = dict(roi_head=dict(bbox_roi_extractor=dict('
                    "type='mmdet.SingleRoIExtractor')))\n")
        ctx = self.tool.Context(device=torch.device('cpu'),
                                tmp=self.tmp.name)
        check = self.tool.run_check(
            'levels', lambda: self.tool.check_levels(config, ctx))
        self.assertEqual(check.status, 'FAIL')
        self.assertEqual(check.numbers['rois_dtype_fp16'], 'float16')
        self.assertGreater(check.numbers['mismatch_levels']['2->3'], 100)
        self.assertIn('RoIs on another level', check.detail)

    def test_resume(self):
        row = self.rows['resume']
        self.assertEqual(row['status'], 'ok', msg=row['detail'])
        self.assertEqual(row['numbers']['max_rel_diff'], 0)
        self.assertEqual(row['numbers']['resumed_iterations'], [3, 4])

    def test_gpu_rows_skipped(self):
        self.assertEqual(self.rows['ddp']['status'], 'skipped')
        self.assertIn('needs 2 GPUs', self.rows['ddp']['detail'])
        self.assertEqual(self.rows['fps']['status'], 'skipped')
        self.assertIn('tools/benchmark.py', self.rows['fps']['detail'])

    def test_failing_row_is_recorded(self):
        def broken(ctx):
            raise RuntimeError('broken on purpose')

        out = osp.join(self.tmp.name, 'failing.json')
        with mock.patch.dict(self.tool.ROW_FUNCTIONS, parity=broken), \
                mock.patch.object(self.tool, 'check_roi_align',
                                  side_effect=ValueError('no RoIAlign')):
            status, report = _run(self.tool, out, '--rows', 'mmcv_ops',
                                  'parity', 'ddp')
        self.assertEqual(status, 1)
        rows = {r['name']: r for r in report['rows']}
        self.assertEqual(report['failed'], ['mmcv_ops', 'parity'])
        self.assertFalse(report['ok'])
        parity = rows['parity']
        self.assertEqual(parity['status'], 'FAIL')
        self.assertEqual(parity['detail'], 'RuntimeError: broken on purpose')
        self.assertIn('broken on purpose', parity['error'])
        self.assertIn('Traceback', parity['error'])
        # a failing part fails its row, and the other parts still ran
        parts = {p['name']: p for p in rows['mmcv_ops']['parts']}
        self.assertEqual(parts['RoIAlign (all configs)']['status'], 'FAIL')
        self.assertIn('ValueError: no RoIAlign',
                      parts['RoIAlign (all configs)']['detail'])
        self.assertEqual(parts['compiled CUDA version']['status'], 'ok')
        self.assertEqual(rows['ddp']['status'], 'skipped')
