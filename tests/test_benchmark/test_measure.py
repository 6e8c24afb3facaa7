"""Tests of ``mmdet_sparse/benchmark/measure.py``: one tiny measurement,
the timed parts, and the load-average check (with a faked
``os.getloadavg``)."""
import copy
import os.path as osp
from unittest import TestCase, mock

import pytest
import torch
from support.benchmark_fakes import REPO, fake_result

import mmdet_sparse.benchmark.measure as measure_module
from mmdet_sparse.benchmark import (build_model, check_load, load_record,
                                    make_inputs, measure_config,
                                    merge_rounds, predict_in_parts,
                                    round_orders, time_parts)

CONFIG = osp.join(REPO, 'configs', 'sparse_rcnn_r50_fpn_1x_coco.py')


class TestMeasure(TestCase):

    @classmethod
    def setUpClass(cls):
        threads = torch.get_num_threads()
        try:
            cls.measured = measure_config(
                CONFIG, img_size=(64, 96), warmup=0, repeats=1,
                device='cpu', threads=1, flops=True)
        finally:
            torch.set_num_threads(threads)

    def test_params(self):
        measured = self.measured
        params = measured['params']
        model, _ = build_model(CONFIG)
        assert params['total'] == sum(p.numel() for p in model.parameters())
        assert params['total'] == 106_290_888
        assert params['backbone'] + params['neck'] + params['heads'] == \
            params['total']
        assert measured['proposals'] == 100
        assert measured['backbone'] == 'ResNet-50'
        assert measured['published_ap']['ap'] == 37.9

    def test_flops_include_dynamic_conv_and_attention(self):
        flops = self.measured['flops']
        assert flops['total'] > flops['backbone_neck'] > 0
        assert flops['heads'] == flops['total'] - flops['backbone_neck']
        # 6 stages x 100 proposals; DynamicConv: (S*S, C) @ (C, F) then
        # (S*S, F) @ (F, C), 2 FLOPs per multiply-add.
        stages, n, s2, c, f = 6, 100, 7 * 7, 256, 64
        dynamic_bmm = stages * n * 2 * (s2 * c * f + s2 * f * c)
        # self-attention among the proposals: Q K^T and A V, (n x n x C) each
        attention_bmm = stages * 2 * (2 * n * n * c)
        by_op = flops['heads_by_op']
        assert flops['heads'] >= dynamic_bmm
        assert by_op['bmm'] >= dynamic_bmm
        assert by_op['bmm'] + by_op.get('baddbmm', 0) == \
            dynamic_bmm + attention_bmm

    def test_latency_and_memory(self):
        measured = self.measured
        lat = measured['latency']
        assert len(lat['runs']) == 1
        assert lat['total'] > 0 and lat['backbone_neck'] > 0 \
            and lat['heads'] > 0
        # the parts are timed within each run: they add up to its total
        for total, feat, heads in zip(lat['runs'], lat['runs_backbone_neck'],
                                      lat['runs_heads']):
            assert feat + heads == pytest.approx(total, rel=1e-12)
        assert lat['backbone_neck'] <= lat['total']
        assert lat['heads'] <= lat['total']
        assert measured['fps'] == pytest.approx(1 / lat['total'])
        assert measured['peak_mem_kind'] == 'cpu_rss_growth'
        assert measured['peak_mem_mib'] >= 0

    def test_timed_parts_are_the_prediction(self):
        model, _ = build_model(
            osp.join(REPO, 'configs', 'sparse_rcnn_r18_fpn_shapes_demo.py'))
        inputs, samples = make_inputs((64, 96))
        with torch.no_grad():
            ref = model.predict(inputs,
                                copy.deepcopy(samples))[0].pred_instances
            feat_s, heads_s, out = predict_in_parts(model, inputs, samples)
        got = out[0].pred_instances
        assert feat_s > 0 and heads_s > 0
        assert torch.equal(got.bboxes, ref.bboxes)
        assert torch.equal(got.scores, ref.scores)
        assert torch.equal(got.labels, ref.labels)
        times = time_parts(model, inputs, samples, 3, lambda: None)
        assert [len(v) for v in times.values()] == [3, 3, 3]
        for total, feat, heads in zip(*times.values()):
            assert total == feat + heads

    def test_load_above_the_cores_warns(self):
        os_ = measure_module.os
        with mock.patch.object(os_, 'getloadavg',
                               return_value=(5.25, 1.0, 0.5)), \
                mock.patch.object(os_, 'sched_getaffinity', create=True,
                                  return_value={0, 1}):
            start = check_load('start')
            end = check_load('end')
        self.assertEqual((start['load'], start['cores']), (5.25, 2))
        for check, when in ((start, 'start'), (end, 'end')):
            self.assertIn('5.25', check['warning'])
            self.assertIn('2 usable cores', check['warning'])
            self.assertIn(f'at the {when} of the measurements',
                          check['warning'])
            self.assertIn('inflated', check['warning'])
        record = load_record([start, end])
        self.assertEqual(record['cores'], 2)
        self.assertEqual((record['start'], record['end']), (5.25, 5.25))
        self.assertEqual(record['warnings'],
                         [start['warning'], end['warning']])

    def test_load_within_the_cores_is_quiet(self):
        os_ = measure_module.os
        with mock.patch.object(os_, 'sched_getaffinity', create=True,
                               return_value={0, 1, 2, 3}):
            with mock.patch.object(os_, 'getloadavg',
                                   return_value=(4.0, 9.0, 9.0)):
                check = check_load('start')  # equal: not above
            self.assertEqual((check['load'], check['cores']), (4.0, 4))
            self.assertIsNone(check['warning'])
            with mock.patch.object(os_, 'getloadavg', side_effect=OSError):
                unknown = check_load('end')
        self.assertIsNone(unknown['load'])
        self.assertIsNone(unknown['warning'])
        self.assertEqual(load_record([check, unknown]),
                         dict(cores=4, start=4.0, end=None, warnings=[]))


class TestRounds(TestCase):
    """``round_orders`` and ``merge_rounds``: the interleaved rounds of
    ``tools/benchmark.py --rounds``."""

    def test_orders_alternate(self):
        assert round_orders(['a', 'b', 'c'], 3) == [
            ['a', 'b', 'c'], ['c', 'b', 'a'], ['a', 'b', 'c']]
        assert round_orders(['a'], 1) == [['a']]
        with pytest.raises(ValueError, match='at least 1'):
            round_orders(['a'], 0)

    def test_merge_pools_runs(self):
        rounds = [fake_result('m', 10, 1.0, ms) for ms in (100, 400, 200)]
        rounds[0]['latency']['runs'] = [0.1, 0.11]
        rounds[0]['latency']['runs_backbone_neck'] = [0.05, 0.06]
        rounds[0]['latency']['runs_heads'] = [0.05, 0.05]
        rounds[1]['peak_mem_mib'] = 300.0
        for r in rounds[1:]:
            del r['flops']
        merged = merge_rounds(rounds)
        latency = merged['latency']
        assert latency['runs'] == [0.1, 0.11, 0.4, 0.2]
        assert latency['total'] == pytest.approx(0.155)
        assert latency['backbone_neck'] == pytest.approx(0.08)
        assert latency['round_totals'] == [0.1, 0.4, 0.2]
        assert merged['fps'] == pytest.approx(1 / 0.155)
        assert merged['peak_mem_mib'] == 123.0  # median over rounds
        assert merged['flops'] == rounds[0]['flops']
        assert merged['rounds'] == 3
        # the inputs are left as they were
        assert rounds[0]['latency']['runs'] == [0.1, 0.11]

    def test_a_failed_round_fails_the_config(self):
        rounds = [fake_result('m', 10, 1.0, 100),
                  dict(config='m', error='RuntimeError: boom')]
        merged = merge_rounds(rounds)
        assert merged['error'] == 'round 2: RuntimeError: boom'
        with pytest.raises(ValueError):
            merge_rounds([])
