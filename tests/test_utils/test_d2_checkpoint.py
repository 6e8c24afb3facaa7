"""The authors' detectron2 checkpoints: conversion, strict loading, outputs.

A synthetic checkpoint in the authors' layout is written from a model of
this package with random, distinct values in every tensor (norms and
biases included), by a name mapping written here independently of the
converter. Converted back, it must load with ``strict=True``, reproduce
every tensor and the predictions, and one head stage must compute what the
authors' ``RCNNHead`` computes with their parameter names.
"""
import contextlib
import io
import math
import os
import os.path as osp
import pickle
import re
import tempfile
from collections import OrderedDict
from unittest import TestCase

import torch
import torch.nn.functional as F

from support.helpers import REPO, build_in_scope, data_samples, load_script
from mmengine.config import Config
from mmdet_sparse.registry import MODELS
from mmdet_sparse.utils.d2_checkpoint import (CheckpointConversionError,
                                              convert_d2_checkpoint,
                                              convert_d2_state_dict,
                                              expected_d2_keys)
from mmdet_sparse.utils.safe_pickle import UnsafePickleError

C = 32  # channels of the shrunk head and FPN
NUM_CLASSES, NUM_PROPOSALS, NUM_STAGES = 3, 5, 2
AUTHORS_CONFIG = osp.join(REPO, 'configs', 'authors',
                          'sparse_rcnn_r50_fpn_100pro_3x_d2.py')
TOOL = osp.join(REPO, 'tools', 'model_converters',
                'sparse_rcnn_d2_to_mmdet.py')


def _small_model():
    """The authors' R50 config with a small head (2 stages, 32 channels)."""
    cfg = Config.fromfile(AUTHORS_CONFIG).model
    cfg.backbone.init_cfg = None
    cfg.neck.out_channels = C
    cfg.rpn_head.update(num_proposals=NUM_PROPOSALS,
                        proposal_feature_channel=C)
    roi = cfg.roi_head
    roi.update(num_stages=NUM_STAGES, stage_loss_weights=[1] * NUM_STAGES,
               proposal_feature_channel=C)
    roi.bbox_roi_extractor.out_channels = C
    roi.bbox_head.update(num_classes=NUM_CLASSES, in_channels=C,
                         feedforward_channels=48, num_heads=4)
    roi.bbox_head.dynamic_conv_cfg.update(in_channels=C, feat_channels=8,
                                          out_channels=C)
    cfg.test_cfg.rcnn.max_per_img = NUM_PROPOSALS
    return build_in_scope(cfg, 'mmdet_sparse', MODELS).eval()


def _fill_distinct(model, seed=0):
    """Random values in every floating tensor: matrices ~ 1/sqrt(fan-in),
    norm weights and variances in [0.5, 1.5), biases and means ~ 0.1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name == 'rpn_head.init_proposal_bboxes.weight':
                t.copy_(torch.cat([torch.rand(len(t), 2, generator=gen) * .4
                                   + .3, torch.rand(len(t), 2, generator=gen)
                                   * .6 + .4], 1))
            elif t.dim() > 1:
                t.copy_(torch.randn(t.shape, generator=gen) /
                        math.sqrt(t[0].numel()))
            elif name.endswith(('running_var', 'weight')):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)


# This package's head module paths -> the authors' (RCNNHead, DynamicConv).
_HEAD = {
    'attention.attn': 'self_attn',
    'attention.attn.out_proj': 'self_attn.out_proj',
    'attention_norm': 'norm1',
    'instance_interactive_conv_norm': 'norm2',
    'ffn_norm': 'norm3',
    'instance_interactive_conv.dynamic_layer': 'inst_interact.dynamic_layer',
    'instance_interactive_conv.norm_in': 'inst_interact.norm1',
    'instance_interactive_conv.norm_out': 'inst_interact.norm2',
    'instance_interactive_conv.fc_layer': 'inst_interact.out_layer',
    'instance_interactive_conv.fc_norm': 'inst_interact.norm3',
    'ffn.layers.0.0': 'linear1',
    'ffn.layers.1': 'linear2',
    'fc_cls': 'class_logits',
    'fc_reg': 'bboxes_delta',
}


def _authors_name(name):
    """The authors' detectron2 name of one of this package's tensors, or
    None for BatchNorm's counter (FrozenBatchNorm has none)."""
    if name.endswith('num_batches_tracked'):
        return None
    module, tensor = name.rsplit('.', 1)
    if module.startswith('rpn_head.'):
        return {'rpn_head.init_proposal_bboxes': 'init_proposal_boxes',
                'rpn_head.init_proposal_features': 'init_proposal_features'
                }[module] + '.' + tensor
    m = re.fullmatch(r'roi_head\.bbox_head\.(\d+)\.(.+)', module)
    if m:
        fc = re.fullmatch(r'(cls|reg)_fcs\.(\d+)', m[2])
        sub = f'{fc[1]}_module.{fc[2]}' if fc else _HEAD[m[2]]
        return f'head.head_series.{m[1]}.{sub}.{tensor}'
    m = re.fullmatch(r'neck\.(lateral|fpn)_convs\.(\d)\.conv', module)
    if m:
        kind = 'lateral' if m[1] == 'lateral' else 'output'
        return f'backbone.fpn_{kind}{int(m[2]) + 2}.{tensor}'
    if module in ('backbone.conv1', 'backbone.bn1'):
        norm = '.norm' if module.endswith('bn1') else ''
        return f'backbone.bottom_up.stem.conv1{norm}.{tensor}'
    m = re.fullmatch(r'backbone\.layer(\d)\.(\d+)\.(conv|bn|downsample\.)(\d)',
                     module)
    block = f'backbone.bottom_up.res{int(m[1]) + 1}.{m[2]}.'
    part = {'conv': f'conv{m[4]}', 'bn': f'conv{m[4]}.norm',
            'downsample.': 'shortcut' if m[4] == '0' else 'shortcut.norm'}
    return block + part[m[3]] + '.' + tensor


def _authors_state_dict(model):
    """The model's tensors under the authors' names (FrozenBN: no
    ``num_batches_tracked``)."""
    out = OrderedDict()
    for name, t in model.state_dict().items():
        key = _authors_name(name)
        if key is not None:
            out[key] = t.clone()
    return out


def _authors_stage(sd, p, roi_feats, pro_feats, boxes, num_heads):
    """One stage of the authors' RCNNHead (eval), from their parameter
    names: attention, residual, norm1; dynamic conv, residual, norm2; FFN,
    residual, norm3; branches; their apply_deltas."""
    def ln(x, name):
        return F.layer_norm(x, x.shape[-1:], sd[p + name + '.weight'],
                            sd[p + name + '.bias'])

    def lin(x, name, bias=True):
        return F.linear(x, sd[p + name + '.weight'],
                        sd[p + name + '.bias'] if bias else None)

    num_imgs, num_boxes, dim = pro_feats.shape
    x = pro_feats.permute(1, 0, 2)  # (N, B, C)
    attn = F.multi_head_attention_forward(
        x, x, x, dim, num_heads, sd[p + 'self_attn.in_proj_weight'],
        sd[p + 'self_attn.in_proj_bias'], None, None, False, 0.0,
        sd[p + 'self_attn.out_proj.weight'],
        sd[p + 'self_attn.out_proj.bias'], training=False)[0]
    x = ln(x + attn, 'norm1')
    x = x.permute(1, 0, 2).reshape(num_imgs * num_boxes, dim)
    params = lin(x, 'inst_interact.dynamic_layer')
    hidden = sd[p + 'inst_interact.norm1.weight'].numel()
    w1 = params[:, :dim * hidden].view(-1, dim, hidden)
    w2 = params[:, dim * hidden:].view(-1, hidden, dim)
    f = roi_feats.flatten(2).permute(0, 2, 1)  # (B*N, 49, C)
    f = F.relu(ln(torch.bmm(f, w1), 'inst_interact.norm1'))
    f = F.relu(ln(torch.bmm(f, w2), 'inst_interact.norm2'))
    f = F.relu(ln(lin(f.flatten(1), 'inst_interact.out_layer'),
                  'inst_interact.norm3'))
    x = ln(x + f, 'norm2')
    x = ln(x + lin(F.relu(lin(x, 'linear1')), 'linear2'), 'norm3')
    cls, reg = x, x
    for branch in ('cls_module', 'reg_module'):
        feat = x
        j = 0
        while p + f'{branch}.{j}.weight' in sd:
            feat = F.relu(ln(lin(feat, f'{branch}.{j}', bias=False),
                             f'{branch}.{j + 1}'))
            j += 3
        cls, reg = (feat, reg) if branch == 'cls_module' else (cls, feat)
    logits = lin(cls, 'class_logits')
    deltas = lin(reg, 'bboxes_delta')
    b = boxes.reshape(-1, 4)
    widths, heights = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    ctr_x, ctr_y = b[:, 0] + 0.5 * widths, b[:, 1] + 0.5 * heights
    dx, dy = deltas[:, 0] / 2.0, deltas[:, 1] / 2.0
    dw = torch.clamp(deltas[:, 2] / 1.0, max=math.log(100000.0 / 16))
    dh = torch.clamp(deltas[:, 3] / 1.0, max=math.log(100000.0 / 16))
    cx, cy = dx * widths + ctr_x, dy * heights + ctr_y
    w, h = torch.exp(dw) * widths, torch.exp(dh) * heights
    pred = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w,
                        cy + 0.5 * h], 1)
    return (logits.view(num_imgs, num_boxes, -1),
            pred.view(num_imgs, num_boxes, 4), x.view(num_imgs, num_boxes,
                                                      dim))


def _predict(model, seed=0):
    shapes = [(32, 40), (32, 32)]
    gen = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (3, h, w), generator=gen).float()
              for h, w in shapes]
    samples = data_samples(shapes, [0, 0], NUM_CLASSES,
                           scale_factor=(1.0, 1.0))
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=inputs, data_samples=samples), False)
        return [s.pred_instances for s in model(**data, mode='predict')]


def _run_tool(argv):
    tool = load_script(osp.relpath(TOOL, REPO), name='d2_tool')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tool.main(argv)
    return out.getvalue()


class TestD2Checkpoint(TestCase):

    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        cls.tmp = tempfile.TemporaryDirectory()
        cls.model = _small_model()
        _fill_distinct(cls.model)
        cls.authors = _authors_state_dict(cls.model)
        cls.fresh = _small_model()  # receives converted weights
        cls.pth = osp.join(cls.tmp.name, 'model_final.pth')
        torch.save(dict(model=cls.authors, optimizer={'state': {}},
                        scheduler={'last_epoch': 9}, iteration=269999),
                   cls.pth)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def _pkl(self, obj, name='model_final.pkl'):
        path = osp.join(self.tmp.name, name)
        with open(path, 'wb') as f:
            pickle.dump(obj, f)
        return path

    def test_layout_is_the_authors(self):
        keys = set(self.authors)
        self.assertEqual(
            keys, set(expected_d2_keys(50, NUM_STAGES, 1, 3)))
        for key in ('init_proposal_boxes.weight',
                    'backbone.bottom_up.stem.conv1.norm.running_var',
                    'backbone.bottom_up.res2.0.shortcut.norm.bias',
                    'backbone.bottom_up.res4.5.conv3.norm.running_mean',
                    'backbone.fpn_lateral2.weight',
                    'backbone.fpn_output5.bias',
                    'head.head_series.1.inst_interact.out_layer.weight',
                    'head.head_series.1.reg_module.7.bias',
                    'head.head_series.0.self_attn.in_proj_weight'):
            self.assertIn(key, keys)
        # Every norm and bias differs from every other tensor of its shape.
        vectors = [t for t in self.authors.values() if t.dim() == 1]
        for i, a in enumerate(vectors):
            for b in vectors[i + 1:]:
                self.assertFalse(a.shape == b.shape and torch.equal(a, b))

    def test_pth_converts_loads_strict_and_predicts(self):
        dst = osp.join(self.tmp.name, 'converted.pth')
        printed = _run_tool([self.pth, dst])
        self.assertIn('ResNet-50, 2 stages', printed)
        self.assertIn(f'converted {len(self.authors)} tensors', printed)
        self.assertIn('not converted (training state): optimizer, scheduler',
                      printed)
        ckpt = torch.load(dst, weights_only=True)
        self.assertEqual(ckpt['meta']['iteration'], 269999)
        self.assertEqual(ckpt['meta']['architecture'],
                         dict(depth=50, num_stages=NUM_STAGES, num_cls_fcs=1,
                              num_reg_fcs=3))
        fresh = self.fresh
        fresh.load_state_dict(ckpt['state_dict'], strict=True)
        loaded = fresh.state_dict()
        for name, tensor in self.model.state_dict().items():
            self.assertTrue(torch.equal(loaded[name], tensor), msg=name)
        for ours, ref in zip(_predict(fresh), _predict(self.model)):
            self.assertEqual(len(ours), NUM_PROPOSALS)
            self.assertTrue(torch.equal(ours.bboxes, ref.bboxes))
            self.assertTrue(torch.equal(ours.scores, ref.scores))
            self.assertTrue(torch.equal(ours.labels, ref.labels))
        # The authors' config options reached the modules.
        roi = fresh.roi_head
        self.assertEqual(roi.bbox_roi_extractor.level_rule, 'detectron2')
        self.assertEqual(roi.bbox_head[0].decode_style, 'detectron2')
        self.assertTrue(roi.test_cfg['clip_to_image'])

    def test_stage_computes_the_authors_head(self):
        sd, _ = convert_d2_state_dict(self.authors)
        fresh = self.fresh
        fresh.load_state_dict(sd, strict=True)
        gen = torch.Generator().manual_seed(1)
        roi_feats = torch.randn(2 * NUM_PROPOSALS, C, 7, 7, generator=gen)
        pro_feats = torch.randn(2, NUM_PROPOSALS, C, generator=gen)
        boxes = torch.tensor([0., 0., 80., 64.]).repeat(2, NUM_PROPOSALS, 1)
        for stage, head in enumerate(fresh.roi_head.bbox_head):
            with torch.no_grad():
                cls, deltas, obj, _ = head(roi_feats, pro_feats)
                ours = (cls, head.decode(boxes, deltas), obj)
                ref = _authors_stage(self.authors, f'head.head_series.'
                                     f'{stage}.', roi_feats, pro_feats,
                                     boxes, num_heads=4)
            for a, b in zip(ours, ref):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        # The stem: detectron2's FrozenBatchNorm is eval-mode batch norm
        # (eps 1e-5) on the same four tensors.
        x = torch.randn(1, 3, 32, 32, generator=gen)
        a = self.authors
        s = 'backbone.bottom_up.stem.conv1.'
        ref = F.max_pool2d(F.relu(F.batch_norm(
            F.conv2d(x, a[s + 'weight'], stride=2, padding=3),
            a[s + 'norm.running_mean'], a[s + 'norm.running_var'],
            a[s + 'norm.weight'], a[s + 'norm.bias'], False, 0., 1e-5)),
            3, 2, 1)
        bb = fresh.backbone
        with torch.no_grad():
            ours = bb.maxpool(bb.relu(bb.bn1(bb.conv1(x))))
        torch.testing.assert_close(ours, ref)

    def test_pkl_equals_pth(self):
        numpy_model = {k: v.numpy() for k, v in self.authors.items()}
        pkl = self._pkl(dict(model=numpy_model, __author__='d2',
                             matching_heuristics=True))
        dst_pkl = osp.join(self.tmp.name, 'from_pkl.pth')
        dst_pth = osp.join(self.tmp.name, 'from_pth.pth')
        report = convert_d2_checkpoint(pkl, dst_pkl)
        convert_d2_checkpoint(self.pth, dst_pth)
        self.assertEqual(len(report['added']), 53)  # BatchNorms of ResNet-50
        a = torch.load(dst_pkl, weights_only=True)
        b = torch.load(dst_pth, weights_only=True)
        self.assertEqual(list(a['state_dict']), list(b['state_dict']))
        for key, value in b['state_dict'].items():
            self.assertTrue(torch.equal(a['state_dict'][key], value))
        self.assertEqual(a['meta']['__author__'], 'd2')

    def test_old_frozen_bn_running_var_gets_eps(self):
        model = OrderedDict(self.authors)
        model._metadata = {'backbone.bottom_up.stem.conv1.norm': {
            'version': 2}}
        sd, report = convert_d2_state_dict(model)
        self.assertEqual(report['frozen_bn_upgraded'],
                         ['backbone.bottom_up.stem.conv1.norm'])
        torch.testing.assert_close(
            sd['backbone.bn1.running_var'],
            model['backbone.bottom_up.stem.conv1.norm.running_var'] - 1e-5)
        self.assertTrue(torch.equal(
            sd['backbone.layer1.0.bn1.running_var'],
            model['backbone.bottom_up.res2.0.conv1.norm.running_var']))

    def test_unknown_and_missing_keys_are_listed(self):
        model = OrderedDict(self.authors)
        del model['head.head_series.1.norm3.bias']
        del model['backbone.bottom_up.res3.2.conv2.norm.running_mean']
        del model['head.head_series.0.reg_module.6.weight']  # a last block
        model['head.head_series.0.extra_proj.weight'] = torch.zeros(2)
        model['pixel_mean'] = torch.zeros(3)
        dst = osp.join(self.tmp.name, 'kept.pth')
        with open(dst, 'w') as f:
            f.write('previous')
        pkl = self._pkl(dict(model={k: v.numpy() for k, v in model.items()}),
                        'broken.pkl')
        with self.assertRaises(CheckpointConversionError) as ctx:
            convert_d2_checkpoint(pkl, dst)
        msg = str(ctx.exception)
        for key in ('head.head_series.1.norm3.bias',
                    'backbone.bottom_up.res3.2.conv2.norm.running_mean',
                    'head.head_series.0.reg_module.6.weight',
                    'head.head_series.0.extra_proj.weight', 'pixel_mean',
                    'broken.pkl', '2 unknown', '3 missing'):
            self.assertIn(key, msg)
        with open(dst) as f:  # nothing written over the existing file
            self.assertEqual(f.read(), 'previous')
        self.assertFalse(any(n.endswith('.tmp')
                             for n in os.listdir(self.tmp.name)))

    def test_hostile_files_are_refused(self):
        marker = osp.join(self.tmp.name, 'marker')

        class Hostile:

            def __reduce__(self):
                return (os.system, (f'touch {marker}', ))

        pkl = self._pkl(dict(model={'init_proposal_boxes.weight': Hostile()}),
                        'hostile.pkl')
        with self.assertRaisesRegex(UnsafePickleError, 'hostile.pkl'):
            convert_d2_checkpoint(pkl, osp.join(self.tmp.name, 'h1.pth'))
        pth = osp.join(self.tmp.name, 'hostile.pth')
        torch.save(dict(model={'x': Hostile()}), pth)
        with self.assertRaisesRegex(CheckpointConversionError,
                                    'weights_only'):
            convert_d2_checkpoint(pth, osp.join(self.tmp.name, 'h2.pth'))
        self.assertFalse(osp.exists(marker))
        self.assertFalse(osp.exists(osp.join(self.tmp.name, 'h1.pth')))
        with self.assertRaisesRegex(CheckpointConversionError, 'blobs'):
            convert_d2_checkpoint(self._pkl(dict(blobs={}), 'c2.pkl'),
                                  osp.join(self.tmp.name, 'h3.pth'))
