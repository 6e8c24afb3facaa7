"""Every config under configs/ablations: one per row of the paper's Tables
3-10 over the R50-FPN 3x base and over the demo; the switch reaches the
model, the demo-sized models build, and their checkpoints load strictly."""
import glob
import io
import os.path as osp

import pytest
import torch
from support.helpers import CONFIG_DIR, load_script
from mmengine.config import Config

ABLATIONS = osp.join(CONFIG_DIR, 'ablations')
R50 = sorted(glob.glob(osp.join(ABLATIONS, '*.py')))
DEMO = sorted(glob.glob(osp.join(ABLATIONS, 'demo', '*.py')))


def _name(path):
    return osp.splitext(osp.basename(path))[0]


def _paper_rows():
    return load_script('tools', 'analysis_tools', 'ablate.py',
                       name='ablate_tool').PAPER


def _assert_within(switch, cfg, where='model'):
    """Every key of ``switch`` has its value in ``cfg``; a replaced
    interaction keeps none of the dynamic convolution's keys."""
    for key, value in switch.items():
        assert key in cfg, f'{where}.{key} missing'
        if isinstance(value, dict):
            if value.get('type', 'DynamicConv') != 'DynamicConv':
                assert 'feat_channels' not in cfg[key], where
            _assert_within(value, cfg[key], f'{where}.{key}')
        else:
            assert cfg[key] == value, f'{where}.{key}'


def _assert_built(model, switch):
    """The built model has what the switch asks for."""
    for key, value in switch.get('rpn_head', {}).items():
        assert getattr(model.rpn_head, key) == value, key
    roi = switch.get('roi_head', {})
    for key in ('num_stages', 'feature_reuse'):
        if key in roi:
            assert getattr(model.roi_head, key) == roi[key], key
    if 'num_stages' in roi:
        assert len(model.roi_head.bbox_head) == roi['num_stages']
    head_switch = roi.get('bbox_head', {})
    for head in model.roi_head.bbox_head:
        for key in ('with_self_attn', 'pos_encoding'):
            if key in head_switch:
                assert getattr(head, key) == head_switch[key], key
        if 'dynamic_conv_cfg' in head_switch:
            assert type(head.instance_interactive_conv).__name__ == \
                head_switch['dynamic_conv_cfg']['type']
        if head_switch.get('with_self_attn') is False:
            assert not hasattr(head, 'attention')


def _assert_every_proposal_may_be_kept(cfg):
    """The detection cap follows the proposals (Table 7's 300 and 500 rows
    must not be cut back to the base's 100, or the demo's 40)."""
    assert cfg.model.test_cfg.rcnn.max_per_img == \
        cfg.model.rpn_head.num_proposals


def test_one_config_per_paper_row_over_both_bases():
    rows = set(_paper_rows())
    assert {_name(p) for p in R50} == rows
    assert {_name(p) for p in DEMO} == rows


@pytest.mark.parametrize('path', R50, ids=_name)
def test_r50_config_parses_with_its_switch(path):
    cfg = Config.fromfile(path)
    assert cfg.model.backbone.depth == 50
    assert cfg.train_cfg.max_epochs == 36
    _assert_within(cfg.ablation_model, cfg.model)
    _assert_every_proposal_may_be_kept(cfg)
    if cfg.model.rpn_head.get('init_boxes') == 'dataset':
        assert cfg.default_hooks.proposal_init.type == \
            'DatasetProposalInitHook'


@pytest.mark.parametrize('path', DEMO, ids=_name)
def test_demo_config_builds_and_round_trips(path):
    from mmdet_sparse.deploy import build_detector
    cfg = Config.fromfile(path)
    assert cfg.model.backbone.depth == 18
    _assert_within(cfg.ablation_model, cfg.model)
    _assert_every_proposal_may_be_kept(cfg)
    torch.manual_seed(0)
    model, _ = build_detector(cfg)
    _assert_built(model, cfg.ablation_model)
    buffer = io.BytesIO()
    torch.save(dict(state_dict=model.state_dict()), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)['state_dict']
    torch.manual_seed(1)
    other, _ = build_detector(cfg)
    other.load_state_dict(state, strict=True)
    for key, value in other.state_dict().items():
        assert torch.equal(value, state[key]), key
