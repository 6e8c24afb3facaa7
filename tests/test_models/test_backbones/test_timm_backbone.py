"""TimmBackbone: feature shapes/strides vs an FPN, local pretrained files,
frozen BatchNorm statistics."""
import pytest
import torch

from mmdet_sparse.models.backbones import TimmBackbone
from mmdet_sparse.registry import MODELS
from mmdet_sparse.utils import register_all_modules

timm = pytest.importorskip('timm')


@pytest.mark.parametrize('name,out_indices,channels', [
    ('resnet18', (1, 2, 3, 4), (64, 128, 256, 512)),
    ('convnext_atto', (0, 1, 2, 3), (40, 80, 160, 320)),
])
def test_features_feed_fpn(name, out_indices, channels):
    register_all_modules()
    backbone = MODELS.build(
        dict(type='TimmBackbone', model_name=name, out_indices=out_indices))
    assert isinstance(backbone, TimmBackbone)
    assert backbone.out_channels == channels
    assert backbone.strides == (4, 8, 16, 32)
    neck = MODELS.build(
        dict(
            type='FPN',
            in_channels=list(backbone.out_channels),
            out_channels=32,
            num_outs=4))
    x = torch.randn(1, 3, 64, 96)
    feats = backbone(x)
    assert isinstance(feats, tuple)
    assert [f.shape for f in feats] == [
        (1, c, 64 // s, 96 // s)
        for c, s in zip(backbone.out_channels, backbone.strides)
    ]
    outs = neck(feats)
    assert [o.shape[-2:] for o in outs] == [(64 // s, 96 // s)
                                           for s in (4, 8, 16, 32)]


def test_pretrained_from_local_file(tmp_path):
    """A classifier checkpoint (with fc head) loads into the feature model,
    through ``init_cfg`` and through ``checkpoint_path``."""
    path = str(tmp_path / 'resnet18_random.pth')
    source = timm.create_model('resnet18', pretrained=False)
    torch.save(source.state_dict(), path)
    expected = source.layer3[1].conv2.weight

    backbone = TimmBackbone(
        'resnet18',
        out_indices=(1, 2, 3, 4),
        init_cfg=dict(type='Pretrained', checkpoint=path))
    assert not torch.equal(backbone.timm_model.layer3[1].conv2.weight,
                           expected)
    backbone.init_weights()
    assert torch.equal(backbone.timm_model.layer3[1].conv2.weight, expected)

    direct = TimmBackbone(
        'resnet18', out_indices=(1, 2, 3, 4), checkpoint_path=path)
    assert torch.equal(direct.timm_model.layer3[1].conv2.weight, expected)


def test_key_mismatches_are_reported(tmp_path, monkeypatch):
    from mmdet_sparse.models.backbones import timm_backbone
    logged = []
    monkeypatch.setattr(timm_backbone, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    state = timm.create_model('resnet18').state_dict()
    path = str(tmp_path / 'resnet18_random.pth')
    torch.save(state, path)
    TimmBackbone('resnet18', checkpoint_path=path)
    assert logged == []  # the classifier in the file is not a mismatch

    del state['layer4.1.bn2.weight']
    state['extra.weight'] = torch.zeros(2)
    torch.save(state, path)
    TimmBackbone('resnet18', checkpoint_path=path)
    assert len(logged) == 2
    assert 'Missing keys' in logged[0] and 'layer4.1.bn2.weight' in logged[0]
    assert 'Unexpected keys' in logged[1] and 'extra.weight' in logged[1]

    # wrong shapes fail loudly
    torch.save(timm.create_model('resnet50').state_dict(), path)
    backbone = TimmBackbone(
        'resnet18', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(RuntimeError):
        backbone.init_weights()


def test_norm_eval():
    backbone = TimmBackbone('resnet18', out_indices=(1, 2, 3, 4),
                            norm_eval=True)
    backbone.train()
    bns = [m for m in backbone.modules()
           if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert backbone.timm_model.training
    before = bns[0].running_mean.clone()
    backbone(torch.randn(2, 3, 64, 64))
    assert torch.equal(bns[0].running_mean, before)
