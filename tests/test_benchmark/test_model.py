"""Tests of ``mmdet_sparse/benchmark/model.py``."""
import os.path as osp
from unittest import TestCase

import torch
from support.benchmark_fakes import REPO

from mmdet_sparse.benchmark import (backbone_label, build_model,
                                    count_params, make_inputs)


class TestModel(TestCase):

    def test_backbone_label(self):
        self.assertEqual(backbone_label(dict(type='ResNet', depth=50)),
                         'ResNet-50')
        self.assertEqual(backbone_label(dict(type='ResNeXt', depth=101)),
                         'ResNeXt-101')
        self.assertEqual(
            backbone_label(dict(type='TimmBackbone',
                                model_name='convnext_tiny')),
            'timm convnext_tiny')
        self.assertEqual(backbone_label(dict(type='SwinTransformer')),
                         'SwinTransformer')

    def test_inputs(self):
        inputs, samples = make_inputs((64, 96))
        self.assertEqual(tuple(inputs.shape), (1, 3, 64, 96))
        self.assertTrue(torch.equal(inputs, make_inputs((64, 96))[0]))
        self.assertEqual(samples[0].batch_input_shape, (64, 96))
        with self.assertRaisesRegex(ValueError, 'multiples of 32'):
            make_inputs((60, 96))

    def test_random_weights_and_params(self):
        model, cfg = build_model(
            osp.join(REPO, 'configs', 'sparse_rcnn_r18_fpn_shapes_demo.py'))
        self.assertFalse(model.training)
        self.assertFalse(any(p.requires_grad for p in model.parameters()))
        params = count_params(model)
        self.assertEqual(params['total'],
                         sum(p.numel() for p in model.parameters()))
        self.assertEqual(
            params['backbone'] + params['neck'] + params['heads'],
            params['total'])
        self.assertEqual(backbone_label(cfg.model.backbone), 'ResNet-18')
