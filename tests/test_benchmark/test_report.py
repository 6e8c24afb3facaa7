"""Tests of ``mmdet_sparse/benchmark/report.py``: the report files from
fake measurements, and the Pareto front."""
import json
import tempfile
from pathlib import Path
from unittest import TestCase

import torch
from support.benchmark_fakes import fake_result

from mmdet_sparse.benchmark import format_table, pareto_front, write_report


class TestReport(TestCase):

    def test_pareto_front(self):
        #          fast+weak  dominated  slow+strong  tie in AP, slower  best
        points = [(1.0, 40.0), (2.0, 39.0), (5.0, 48.0), (6.0, 48.0),
                  (3.0, 45.0)]
        assert pareto_front(points) == [0, 4, 2]
        assert pareto_front([(2.0, 40.0), (2.0, 40.0)]) == [0, 1]
        assert pareto_front([]) == []

    def test_report_files(self):
        with tempfile.TemporaryDirectory() as tmp:
            self._check_report_files(Path(tmp))

    def _check_report_files(self, tmp_path: Path):
        results = [fake_result('model_a', 106_000_000, 150.0, 500.0),
                   fake_result('model_b', 125_000_000, 230.0, 800.0),
                   fake_result('sparse_rcnn_swin_t_fpn_3x_coco', 110_000_000,
                               172.0, 600.0),
                   fake_result('sparse_rcnn_r50_fpn_3x_coco', 106_000_000,
                               126.0, 450.0),
                   dict(config='model_c', error='RuntimeError: boom')]
        meta = dict(device='cpu', threads=1, torch=torch.__version__,
                    img_size=[800, 1216], warmup=1, repeats=3)
        table = write_report(results, meta, str(tmp_path))
        md = (tmp_path / 'benchmark.md').read_text()
        assert md == table
        assert '| config | backbone | proposals | params (M) | GFLOPs |' in md
        assert '| model_a | ResNet-50 | 100 | 106.0 | 150.0 | 250.0 | ' \
            '250.0 | 500.0 | 2.00 | 123 | - |' in md
        assert '| sparse_rcnn_swin_t_fpn_3x_coco | ResNet-50 | 100 | ' \
            '110.0 | 172.0 | 300.0 | 300.0 | 600.0 | 1.67 | 123 | 47.9* |' \
            in md
        assert '| sparse_rcnn_r50_fpn_3x_coco | ResNet-50 | 100 | 106.0 | ' \
            '126.0 | 225.0 | 225.0 | 450.0 | 2.22 | 123 | 42.8 |' in md
        assert '- sparse_rcnn_swin_t_fpn_3x_coco: 47.9* — Swin Transformer ' \
            'paper' in md
        assert 'MMDetection 3.3.0 model zoo' in md
        assert 'model_c | error: RuntimeError: boom' in md
        assert 'input: 1x3x800x1216' in md and \
            '2 FLOPs per multiply-add' in md
        assert 'load average' not in md  # not recorded: no line
        data = json.loads((tmp_path / 'benchmark.json').read_text())
        assert [r['config'] for r in data['results']] == \
            ['model_a', 'model_b', 'sparse_rcnn_swin_t_fpn_3x_coco',
             'sparse_rcnn_r50_fpn_3x_coco', 'model_c']
        png = (tmp_path / 'benchmark.png').read_bytes()
        assert png.startswith(b'\x89PNG')

    def test_load_average_lines(self):
        meta = dict(device='cpu', threads=2, torch=torch.__version__,
                    img_size=[64, 96], warmup=0, repeats=1,
                    load_average=dict(cores=2, start=13.2, end=1.5,
                                      warnings=['load average 13.20 ...']))
        md = format_table([fake_result('model_a', 10, 1.0, 5.0)], meta)
        lines = md.splitlines()
        at = lines.index('- input: 1x3x64x96 (batch 1), warm-up 0, median '
                         'of 1 runs')
        self.assertEqual(lines[at + 1:at + 4], [
            '- load average (1 min): 13.20 at the start, 1.50 at the end of '
            'the measurements; 2 usable cores',
            '- warning: load average 13.20 ...', ''])
