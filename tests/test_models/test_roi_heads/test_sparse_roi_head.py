import copy
import math

import torch

from support.helpers import (OneThreadTestCase, add_masks, build_heads,
                             build_in_scope, data_samples, fpn_features,
                             max_rel_diff, mmdet_queryinst_config,
                             narrow_queryinst, our_config,
                             our_queryinst_config)
from mmdet.registry import MODELS as MMDET_MODELS

CHANNELS = 32


def _heads(num_classes=4, num_proposals=10, seed=0):
    torch.manual_seed(seed)
    rpn, roi = build_heads(our_config().model, 'mmdet_sparse', num_classes,
                           num_proposals)
    rpn.init_weights()
    roi.init_weights()
    return rpn, roi


def _loss(rpn, roi, shapes, samples, feats=None):
    feats = feats if feats is not None else fpn_features(shapes)
    _, proposals = rpn.loss_and_predict(feats, samples)
    return roi.loss(feats, proposals, samples)


def _queryinst_cfg(mmdet=False, num_classes=4, num_proposals=10):
    """A 32-channel QueryInst head config (ours or MMDetection's)."""
    cfg = (mmdet_queryinst_config() if mmdet else our_queryinst_config())
    cfg = narrow_queryinst(cfg.model, CHANNELS)
    cfg['rpn_head']['num_proposals'] = num_proposals
    for key in ('bbox_head', 'mask_head'):
        heads = cfg['roi_head'][key]
        for head in (heads if isinstance(heads, list) else [heads]):
            head['num_classes'] = num_classes
    cfg['roi_head']['train_cfg'] = cfg['train_cfg']['rcnn']
    cfg['roi_head']['test_cfg'] = dict(cfg['test_cfg']['rcnn'],
                                       max_per_img=num_proposals)
    return cfg


def _queryinst_heads(seed=0, **kwargs):
    torch.manual_seed(seed)
    cfg = _queryinst_cfg(**kwargs)
    rpn = build_in_scope(cfg['rpn_head'], 'mmdet_sparse')
    roi = build_in_scope(cfg['roi_head'], 'mmdet_sparse')
    rpn.init_weights()
    roi.init_weights()
    return rpn, roi


def _mask_samples(shapes, num_gts, num_classes=4):
    return add_masks(data_samples(shapes, num_gts, num_classes))


class TestSparseRoIHead(OneThreadTestCase):

    def test_init_weights_reaches_every_stage(self):
        rpn, roi = _heads(num_classes=3)
        prior = -math.log((1 - 0.01) / 0.01)
        for head in roi.bbox_head:
            self.assertTrue(
                torch.allclose(head.fc_cls.bias, torch.full((3, ), prior)))
            self.assertTrue(torch.all(head.fc_reg.bias == 0))

    def test_loss_keys_and_values(self):
        rpn, roi = _heads()
        shapes = [(64, 96), (96, 64)]
        losses = _loss(rpn, roi, shapes, data_samples(shapes, [2, 3], 4))
        names = ('loss_cls', 'pos_acc', 'loss_bbox', 'loss_iou')
        self.assertEqual(
            set(losses), {f's{i}.{n}'
                          for i in range(6) for n in names})
        for value in losses.values():
            self.assertTrue(torch.isfinite(value))

    def test_boxes_detached_between_stages(self):
        rpn, roi = _heads()
        shapes = [(64, 96)]
        losses = _loss(rpn, roi, shapes, data_samples(shapes, [3], 4))
        (losses['s1.loss_bbox'] + losses['s1.loss_cls']).backward()
        # Later stages see detached boxes, but the proposal features flow.
        self.assertIsNone(rpn.init_proposal_bboxes.weight.grad)
        feat_grad = rpn.init_proposal_features.weight.grad
        self.assertGreater(feat_grad.abs().sum(), 0)
        rpn.zero_grad()
        losses = _loss(rpn, roi, shapes, data_samples(shapes, [3], 4))
        losses['s0.loss_bbox'].backward()
        self.assertGreater(rpn.init_proposal_bboxes.weight.grad.abs().sum(), 0)

    def test_every_level_in_graph(self):
        # Whole-image proposals on a small image all pool from the coarsest
        # level; the others must still receive a (zero) gradient.
        rpn, roi = _heads()
        shapes = [(64, 96), (64, 96)]
        feats = [f.requires_grad_() for f in fpn_features(shapes)]
        losses = _loss(rpn, roi, shapes, data_samples(shapes, [2, 1], 4),
                       feats)
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        grads = [f.grad for f in feats]
        self.assertTrue(all(g is not None for g in grads))
        used = [bool(g.abs().sum() > 0) for g in grads]
        self.assertIn(True, used)
        self.assertIn(False, used)

    def test_all_images_without_boxes(self):
        rpn, roi = _heads()
        shapes = [(64, 96), (64, 64)]
        losses = _loss(rpn, roi, shapes, data_samples(shapes, [0, 0], 4))
        for i in range(6):
            self.assertEqual(losses[f's{i}.loss_bbox'].item(), 0)
            self.assertEqual(losses[f's{i}.loss_iou'].item(), 0)
            # Normaliser clamps to 1: the focal loss stays a plain sum.
            cls = losses[f's{i}.loss_cls'].item()
            self.assertTrue(math.isfinite(cls) and 0 < cls < 1e3)
        sum(v for k, v in losses.items() if 'loss' in k).backward()

    def test_more_boxes_than_proposals(self):
        rpn, roi = _heads(num_proposals=10)
        shapes = [(96, 96)]
        losses = _loss(rpn, roi, shapes, data_samples(shapes, [25], 4))
        self.assertTrue(all(torch.isfinite(v) for v in losses.values()))

    def test_one_class(self):
        rpn, roi = _heads(num_classes=1)
        shapes = [(64, 96), (80, 64)]
        samples = data_samples(shapes, [2, 1], 1)
        losses = _loss(rpn, roi, shapes, samples)
        self.assertTrue(all(torch.isfinite(v) for v in losses.values()))
        with torch.no_grad():
            feats = fpn_features(shapes)
            preds = roi.predict(feats, rpn.predict(feats, samples), samples)
        self.assertTrue(all((p.labels == 0).all() for p in preds))
        self.assertEqual(len(preds[0]), 10)

    def test_non_finite_cost_names_image(self):
        rpn, roi = _heads()
        shapes = [(64, 96), (64, 96)]
        samples = data_samples(shapes, [2, 2], 4)
        samples[1].gt_instances.bboxes[0, 0] = float('nan')
        with self.assertRaisesRegex(ValueError, r'img_1\.jpg'):
            _loss(rpn, roi, shapes, samples)

    def test_batched_equals_per_image_prediction(self):
        # float64: float32 matrix products need not round alike at batch
        # sizes 1 and 2 (BLAS kernels differ by shape), and six random
        # stages amplify that rounding.
        rpn, roi = (m.double() for m in _heads(num_classes=5,
                                               num_proposals=12))
        rpn.eval()
        roi.eval()
        shapes = [(64, 96), (48, 60)]
        samples = data_samples(shapes, [1, 1], 5)
        feats = [f.double() for f in fpn_features(shapes, seed=3)]
        with torch.no_grad():
            batched = roi.predict(feats, rpn.predict(feats, samples), samples,
                                  rescale=True)
            for i in range(2):
                one_feats = [f[i:i + 1] for f in feats]
                single = roi.predict(one_feats,
                                     rpn.predict(one_feats, samples[i:i + 1]),
                                     samples[i:i + 1], rescale=True)[0]
                torch.testing.assert_close(batched[i].scores, single.scores)
                torch.testing.assert_close(batched[i].bboxes, single.bboxes)
                self.assertTrue(torch.equal(batched[i].labels, single.labels))

    def test_predictions_sorted_rescaled_and_capped(self):
        rpn, roi = _heads(num_classes=3, num_proposals=4)
        shapes = [(64, 96)]
        samples = data_samples(shapes, [1], 3, scale_factor=(2.0, 2.0))
        feats = fpn_features(shapes)
        with torch.no_grad():
            proposals = rpn.predict(feats, samples)
            pred = roi.predict(feats, proposals, samples, rescale=False)[0]
            scaled = roi.predict(feats, rpn.predict(feats, samples), samples,
                                 rescale=True)[0]
        self.assertEqual(len(pred), 4)
        self.assertTrue(torch.all(pred.scores[:-1] >= pred.scores[1:]))
        torch.testing.assert_close(scaled.bboxes, pred.bboxes / 2)
        roi.test_cfg['max_per_img'] = 100  # more than N*K = 12 pairs
        with torch.no_grad():
            pred = roi.predict(feats, rpn.predict(feats, samples), samples)[0]
        self.assertEqual(len(pred), 12)

    def test_forward_returns_every_stage(self):
        rpn, roi = _heads()
        shapes = [(64, 96)]
        samples = data_samples(shapes, [1], 4)
        feats = fpn_features(shapes)
        outs = roi(feats, rpn.predict(feats, samples), samples)
        self.assertEqual(len(outs), 6)
        self.assertEqual(outs[-1][0].shape, (1, 10, 4))
        self.assertEqual(outs[-1][1].shape, (1, 10, 4))

    def test_bfloat16_autocast(self):
        rpn, roi = _heads()
        shapes = [(64, 96)]
        samples = data_samples(shapes, [3], 4)
        feats = fpn_features(shapes)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            boxes, _ = rpn([s.metainfo for s in samples])
            cls_score, new_boxes, obj = roi._stage_forward(
                0, feats, boxes, rpn.init_proposal_features.weight[None])
            losses = _loss(rpn, roi, shapes, samples, feats)
        # Linear layers run in bfloat16; boxes, matching costs and the
        # losses (GIoU included) stay in float32.
        self.assertEqual(cls_score.dtype, torch.bfloat16)
        self.assertEqual(new_boxes.dtype, torch.float32)
        for key, value in losses.items():
            self.assertEqual(value.dtype, torch.float32, msg=key)
            self.assertTrue(torch.isfinite(value), msg=key)
        # Backward runs through every stage (the dynamic convolution's own
        # backward included) and gives float32 gradients to float32 weights.
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        for name, param in roi.named_parameters():
            self.assertIsNotNone(param.grad, msg=name)
            self.assertEqual(param.grad.dtype, torch.float32, msg=name)
            self.assertTrue(torch.isfinite(param.grad).all(), msg=name)

    def test_rejects_other_sampler(self):
        cfg = our_config().model
        cfg.train_cfg.rcnn.sampler = dict(type='RandomSampler', num=8,
                                          pos_fraction=0.5)
        with self.assertRaisesRegex(TypeError, 'PseudoSampler'):
            build_heads(cfg, 'mmdet_sparse', 3, 5)

    def test_score_thr_and_clip_to_image(self):
        # score_thr keeps exactly the detections scoring above it (in the
        # same order); clip_to_image clips to the original image and drops
        # boxes without area; both stay off by default.
        cfg = our_config().model  # 2 small stages: fast to build
        cfg.rpn_head.proposal_feature_channel = 32
        cfg.roi_head.update(num_stages=2, stage_loss_weights=[1, 1],
                            proposal_feature_channel=32)
        cfg.roi_head.bbox_roi_extractor.out_channels = 32
        cfg.roi_head.bbox_head.update(in_channels=32, feedforward_channels=48)
        cfg.roi_head.bbox_head.dynamic_conv_cfg.update(
            in_channels=32, feat_channels=8, out_channels=32)
        torch.manual_seed(0)
        rpn, roi = build_heads(cfg, 'mmdet_sparse', 3, 6)
        rpn.init_weights()
        roi.init_weights()
        shapes = [(64, 96), (48, 60)]
        samples = data_samples(shapes, [1, 1], 3, scale_factor=(2.0, 2.0))
        feats = fpn_features(shapes, channels=32, seed=5)

        def predict(**test_cfg):
            roi.test_cfg = dict(max_per_img=18, **test_cfg)
            with torch.no_grad():
                return roi.predict(feats, rpn.predict(feats, samples),
                                   samples, rescale=True)

        plain = predict()
        self.assertEqual([len(p) for p in plain], [18, 18])
        thr = plain[0].scores[7].item()  # a score that is itself dropped
        for full, kept in zip(plain, predict(score_thr=thr)):
            above = full.scores > thr
            self.assertEqual(len(kept), int(above.sum()))
            self.assertTrue(torch.equal(kept.scores, full.scores[above]))
            self.assertTrue(torch.equal(kept.bboxes, full.bboxes[above]))
            self.assertTrue(torch.equal(kept.labels, full.labels[above]))
        self.assertEqual(len(predict(score_thr=thr)[0]), 7)
        crossing = 0
        for full, clipped, sample in zip(plain, predict(clip_to_image=True),
                                         samples):
            h, w = sample.metainfo['ori_shape']
            boxes = full.bboxes.clone()
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
            keep = ((boxes[:, 2] > boxes[:, 0]) &
                    (boxes[:, 3] > boxes[:, 1]))
            crossing += int((boxes != full.bboxes).any(1).sum())
            self.assertTrue(torch.equal(clipped.bboxes, boxes[keep]))
            self.assertTrue(torch.equal(clipped.scores, full.scores[keep]))
        self.assertGreater(crossing, 0)  # the case was exercised


    # QueryInst (masks) and mixing with MMDetection's heads.

    def test_masks_all_images_without_boxes(self):
        rpn, roi = _queryinst_heads()
        shapes = [(64, 96), (64, 64)]
        samples = _mask_samples(shapes, [0, 0])
        losses = _loss(rpn, roi, shapes, samples,
                       fpn_features(shapes, CHANNELS))
        for i in range(6):
            self.assertEqual(losses[f's{i}.loss_mask'].item(), 0)
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        for name, param in roi.mask_head.named_parameters():
            self.assertIsNotNone(param.grad, msg=name)

    def test_masks_float16_autocast_dice_in_float32(self):
        """Under fp16 AMP the Dice loss gets float32 inputs: it sums S*S
        products per mask, which float16 would round coarsely."""
        rpn, roi = _queryinst_heads()
        shapes = [(64, 96)]
        samples = _mask_samples(shapes, [3])
        seen = []
        for head in roi.mask_head:
            head.loss_mask.register_forward_pre_hook(
                lambda _, args: seen.append((args[0].dtype, args[1].dtype)))
        with torch.autocast('cpu', dtype=torch.float16):
            losses = _loss(rpn, roi, shapes, samples,
                           fpn_features(shapes, CHANNELS))
        self.assertEqual(seen, [(torch.float32, torch.float32)] * 6)
        for i in range(6):
            self.assertEqual(losses[f's{i}.loss_mask'].dtype, torch.float32)
            self.assertTrue(torch.isfinite(losses[f's{i}.loss_mask']))

    def test_levels_of_every_stage_without_host_sync(self):
        """``_levels`` gives a device mask per stage; ``loss`` reads them
        once."""
        rpn, roi = _heads()
        boxes = torch.tensor([[[0., 0., 20., 20.], [0., 0., 500., 500.]]])
        used = roi._levels(0, boxes, 4)
        self.assertEqual(used.dtype, torch.bool)
        self.assertEqual(used.tolist(), [True, False, False, True])

    def test_masks_need_gt_masks(self):
        rpn, roi = _queryinst_heads()
        shapes = [(64, 96)]
        samples = data_samples(shapes, [2], 4)
        with self.assertRaisesRegex(KeyError, r'img_0\.jpg.*with_mask'):
            _loss(rpn, roi, shapes, samples, fpn_features(shapes, CHANNELS))

    def test_masks_batched_equal_per_image_and_rescaled(self):
        # float64, as in test_batched_equals_per_image_prediction.
        rpn, roi = (m.double() for m in _queryinst_heads(num_proposals=12))
        rpn.eval()
        roi.eval()
        shapes = [(64, 96), (48, 60)]
        samples = _mask_samples(shapes, [1, 1])
        feats = [f.double() for f in fpn_features(shapes, CHANNELS, seed=3)]
        with torch.no_grad():
            batched = roi.predict(feats, rpn.predict(feats, samples), samples,
                                  rescale=True)
            unscaled = roi.predict(feats, rpn.predict(feats, samples),
                                   samples, rescale=False)
            for i in range(2):
                one = [f[i:i + 1] for f in feats]
                single = roi.predict(one, rpn.predict(one, samples[i:i + 1]),
                                     samples[i:i + 1], rescale=True)[0]
                self.assertTrue(torch.equal(batched[i].masks, single.masks))
                torch.testing.assert_close(batched[i].bboxes, single.bboxes)
        for res, unsc, sample in zip(batched, unscaled, samples):
            ori_h, ori_w = sample.metainfo['ori_shape']
            self.assertEqual(res.masks.shape[1:], (ori_h, ori_w))
            self.assertEqual(tuple(unsc.masks.shape[1:]),
                             (round(ori_h * 1.25), round(ori_w * 1.5)))
            self.assertEqual(set(res.keys()),
                             {'bboxes', 'scores', 'labels', 'masks'})

    def test_score_thr_keeps_each_mask_with_its_box(self):
        """``score_thr`` filters the detections before the mask branch: the
        masks left are those of the kept boxes, in the same order."""
        # float64, as in test_batched_equals_per_image_prediction.
        rpn, roi = (m.double() for m in _queryinst_heads(num_proposals=12))
        rpn.eval()
        roi.eval()
        shapes = [(64, 96), (48, 60)]
        samples = _mask_samples(shapes, [1, 1])
        feats = [f.double() for f in fpn_features(shapes, CHANNELS, seed=3)]
        with torch.no_grad():
            full = roi.predict(feats, rpn.predict(feats, samples), samples)
            thr = float(full[0].scores.median())
            roi.test_cfg['score_thr'] = thr
            kept = roi.predict(feats, rpn.predict(feats, samples), samples)
        for f, k in zip(full, kept):
            keep = f.scores > thr
            self.assertGreater(len(f), int(keep.sum()))
            self.assertTrue(torch.equal(k.masks, f.masks[keep]))
            self.assertTrue(torch.equal(k.bboxes, f.bboxes[keep]))

    def test_mask_head_must_take_proposal_features(self):
        cfg = _queryinst_cfg()['roi_head']
        cfg['mask_head'] = dict(type='FCNMaskHead', num_convs=1,
                                in_channels=CHANNELS, conv_out_channels=8,
                                num_classes=4)
        with self.assertRaisesRegex(TypeError, 'DynamicMaskHead'):
            build_in_scope(cfg, 'mmdet_sparse')

    def test_mixing_with_mmdetection_heads(self):
        """This package's EmbeddingRPNHead feeds MMDetection's
        SparseRoIHead (with this package's mask heads inside), and
        MMDetection's EmbeddingRPNHead feeds this package's SparseRoIHead:
        the losses equal MMDetection's own pair's."""
        ref_cfg = _queryinst_cfg(mmdet=True)
        torch.manual_seed(0)
        ref_rpn = build_in_scope(ref_cfg['rpn_head'], 'mmdet', MMDET_MODELS)
        ref_roi = build_in_scope(ref_cfg['roi_head'], 'mmdet', MMDET_MODELS)
        ref_rpn.init_weights()
        ref_roi.init_weights()
        with torch.no_grad():  # boxes inside the images (MMDetection's
            for head in ref_roi.bbox_head:  # CPU paste needs it)
                head.fc_reg.weight.mul_(0.1)
        mixed_cfg = copy.deepcopy(ref_cfg['roi_head'])
        mixed_cfg['type'] = 'mmdet.SparseRoIHead'
        for head in mixed_cfg['bbox_head']:
            head['type'] = 'mmdet.DIIHead'
        pairs = {
            'ours+mmdet': (
                build_in_scope(ref_cfg['rpn_head'], 'mmdet_sparse'),
                build_in_scope(mixed_cfg, 'mmdet_sparse')),
            'mmdet+ours': (
                build_in_scope(ref_cfg['rpn_head'], 'mmdet', MMDET_MODELS),
                build_in_scope(_queryinst_cfg()['roi_head'], 'mmdet_sparse')),
        }
        own = type(pairs['ours+mmdet'][1].mask_head[0]).__module__
        self.assertTrue(own.startswith('mmdet_sparse'), own)
        shapes = [(64, 96), (64, 80)]
        samples = _mask_samples(shapes, [3, 2])
        feats = fpn_features(shapes, CHANNELS)

        def run(rpn, roi):
            _, proposals = rpn.loss_and_predict(feats, copy.deepcopy(samples))
            losses = roi.loss(feats, proposals, copy.deepcopy(samples))
            roi.eval()
            with torch.no_grad():
                preds = roi.predict(feats, rpn.predict(feats, samples),
                                    samples, rescale=True)
            return losses, preds

        ref_losses, ref_preds = run(ref_rpn, ref_roi)
        for name, (rpn, roi) in pairs.items():
            rpn.load_state_dict(ref_rpn.state_dict(), strict=True)
            roi.load_state_dict(ref_roi.state_dict(), strict=True)
            losses, preds = run(rpn, roi)
            self.assertEqual(sorted(losses), sorted(ref_losses), msg=name)
            for key, value in ref_losses.items():
                self.assertLessEqual(max_rel_diff(losses[key], value), 1e-5,
                                     msg=f'{name} {key}')
            for pred, ref in zip(preds, ref_preds):
                self.assertEqual(pred.masks.shape, ref.masks.shape)

    def test_mix_errors_suggest_working_combinations(self):
        shapes = [(64, 96)]
        samples = _mask_samples(shapes, [2])
        feats = fpn_features(shapes, CHANNELS)
        # MMDetection's SparseRoIHead around this package's DIIHead.
        cfg = _queryinst_cfg()['roi_head']
        cfg['type'] = 'mmdet.SparseRoIHead'
        cfg['train_cfg'] = [cfg['train_cfg']] * 6  # its format
        rpn = build_in_scope(_queryinst_cfg()['rpn_head'], 'mmdet_sparse')
        roi = build_in_scope(cfg, 'mmdet_sparse')
        with self.assertRaises(TypeError) as error:
            _loss(rpn, roi, shapes, copy.deepcopy(samples), feats)
        message = str(error.exception)
        self.assertIn("type='mmdet.SparseRoIHead'", message)
        self.assertIn("bbox_head type='mmdet.DIIHead'", message)
        # ... and the suggested combination works.
        cfg['bbox_head'] = dict(cfg['bbox_head'], type='mmdet.DIIHead')
        roi = build_in_scope(cfg, 'mmdet_sparse')
        losses = _loss(rpn, roi, shapes, copy.deepcopy(samples), feats)
        self.assertTrue(torch.isfinite(losses['s5.loss_mask']))

        # This package's SparseRoIHead around MMDetection's DIIHead.
        cfg = _queryinst_cfg()['roi_head']
        cfg['bbox_head'] = dict(cfg['bbox_head'], type='mmdet.DIIHead')
        with self.assertRaises(TypeError) as error:
            build_in_scope(cfg, 'mmdet_sparse')
        message = str(error.exception)
        self.assertIn("type='DIIHead'", message)
        self.assertIn("type='mmdet.SparseRoIHead'", message)
        cfg['bbox_head']['type'] = 'DIIHead'
        roi = build_in_scope(cfg, 'mmdet_sparse')
        losses = _loss(rpn, roi, shapes, copy.deepcopy(samples), feats)
        self.assertTrue(torch.isfinite(losses['s5.loss_mask']))
