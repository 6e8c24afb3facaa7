"""ONNX export of the ablation variants (configs/ablations/demo): each one
exports and matches PyTorch."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from support.deploy_helpers import REPO
from mmengine.config import Config

from mmdet_sparse.deploy import (build_detector,
                                 compare_detections, export_onnx)

DEMO = osp.join(REPO, 'configs', 'ablations', 'demo')
SIZE = (64, 96)

# Each distinct graph (interaction, attention, stages); the initial boxes
# ('center', 'image', 'grid' like 'random' and 'dataset') are weights only.
EXPORTED = ['t3_static_head', 't5_self_attention', 't9_multi_head_attention',
            't8_stages_1', 't6_random', 't6_dataset', 't4_plain_cascade',
            't10_pos_encoding']


def _variant(name, shapes):
    """The demo variant ``name`` on the tiny shapes set, random weights."""
    cfg = Config.fromfile(osp.join(DEMO, f'{name}.py'))
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = shapes['cfg'][split].dataset.data_root
    torch.manual_seed(0)
    model, cfg = build_detector(cfg)
    model.init_weights()
    if model.rpn_head.init_boxes == 'dataset':
        gen = torch.Generator().manual_seed(0)
        model.rpn_head.set_proposal_boxes(
            torch.rand(model.rpn_head.num_proposals, 4, generator=gen) * 0.5
            + 0.25)
    return model.eval(), cfg


def _pytorch(model, image):
    from mmdet.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(
        img_shape=SIZE, ori_shape=SIZE, batch_input_shape=SIZE,
        scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        out = model.predict(image, [sample], rescale=False)[0]
    out = out.pred_instances
    return out.bboxes.numpy(), out.scores.numpy(), out.labels.numpy()


def _onnx(path, image):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return session.run(None, dict(image=image.numpy(),
                                  image_size=np.array(SIZE, np.int64)))


@pytest.mark.parametrize('name', EXPORTED)
def test_variant_exports_and_matches_pytorch(name, shapes, tmp_path):
    model, cfg = _variant(name, shapes)
    path = str(tmp_path / f'{name}.onnx')
    export_onnx(cfg, None, path, img_size=SIZE, model=copy.deepcopy(model))
    image = torch.randn(1, 3, *SIZE,
                        generator=torch.Generator().manual_seed(1))
    res = compare_detections(*_onnx(path, image), *_pytorch(model, image))
    assert res['missing'] == 0, res
    assert res['matched'] >= res['k'] - 2, res
    assert res['max_score_diff'] <= 1e-4, res
    assert res['max_box_diff'] <= 0.1, res
