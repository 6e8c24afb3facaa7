"""Tests of the train/test tool helpers: CPU AMP and CPU DDP."""
import pytest
import torch
from mmengine.config import Config
from mmdet_sparse.registry import OPTIM_WRAPPERS

from mmdet_sparse.apis import (CPUBFloat16OptimWrapper, amp_for_device,
                               enable_amp, setup_cpu_distributed)


def _cfg():
    return Config(dict(optim_wrapper=dict(
        type='OptimWrapper', loss_scale=512.,
        optimizer=dict(type='SGD', lr=0.1))))


def test_enable_amp_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = _cfg()
    msg = enable_amp(cfg)
    assert 'bfloat16' in msg and 'CPU' in msg
    assert cfg.optim_wrapper.type == 'CPUBFloat16OptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert 'loss_scale' not in cfg.optim_wrapper


def test_enable_amp_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = _cfg()
    assert 'float16' in enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'


class _Net(torch.nn.Module):
    """A conv, an mmcv RoIAlign (no bfloat16 CPU kernel) and a linear."""

    def __init__(self):
        super().__init__()
        from mmcv.ops import RoIAlign
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.roi = RoIAlign(2, 1.0, 2)
        self.fc = torch.nn.Linear(16, 2)
        self.dtypes = {}

    def forward(self, x, rois):
        feat = self.conv(x)
        pooled = self.roi(feat, rois)
        out = self.fc(pooled.flatten(1))
        self.dtypes = dict(feat=feat.dtype, pooled=pooled.dtype, out=out.dtype)
        return out


def test_cpu_bf16_wrapper_trains():
    model = _Net()
    wrapper = OPTIM_WRAPPERS.build(dict(
        type='CPUBFloat16OptimWrapper', dtype='bfloat16',
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))
    assert isinstance(wrapper, CPUBFloat16OptimWrapper)
    before = model.fc.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(1, 3, 8, 8), torch.tensor([[0, 0., 0, 4, 4]]))
    wrapper.update_params(out.float().sum())
    assert model.dtypes == dict(
        feat=torch.bfloat16, pooled=torch.float32, out=torch.bfloat16)
    assert model.fc.weight.dtype == torch.float32
    assert not torch.equal(before, model.fc.weight)
    with pytest.raises(ValueError, match='bfloat16'):
        CPUBFloat16OptimWrapper(
            dtype='float16', optimizer=torch.optim.SGD(model.parameters(),
                                                       lr=0.1))


def test_cpu_distributed_needs_gloo(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    with pytest.raises(RuntimeError, match='env_cfg.dist_cfg.backend=gloo'):
        setup_cpu_distributed(cfg)



def test_cpu_bf16_wrapper_refuses_a_model_off_the_cpu():
    """On a GPU machine CPU autocast does nothing: the run would train in
    float32 without a word. A ``meta`` model stands in for a CUDA one."""
    model = torch.nn.Linear(4, 2, device='meta')
    wrapper = CPUBFloat16OptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(RuntimeError, match="meta.*AmpOptimWrapper"):
        with wrapper.optim_context(model):
            pass


def test_amp_for_device(monkeypatch):
    cpu_amp = Config(dict(optim_wrapper=dict(
        type='CPUBFloat16OptimWrapper', dtype='bfloat16',
        optimizer=dict(type='SGD', lr=0.1))))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert 'float16' in amp_for_device(cpu_amp)
    assert cpu_amp.optim_wrapper.type == 'AmpOptimWrapper'
    assert 'dtype' not in cpu_amp.optim_wrapper  # float16, not bfloat16
    assert amp_for_device(cpu_amp) is None  # already right for CUDA
    assert amp_for_device(_cfg()) is None  # no mixed precision asked
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert 'bfloat16' in amp_for_device(cpu_amp)
    assert cpu_amp.optim_wrapper.type == 'CPUBFloat16OptimWrapper'
    assert amp_for_device(cpu_amp) is None


def test_cpu_bf16_wrapper_trains_deformable_conv():
    """mmcv's deformable convolution has no bfloat16 CPU kernel and casts
    its input to its offsets' dtype: it runs with autocast off."""
    from mmcv.ops import ModulatedDeformConv2dPack
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1),
                                ModulatedDeformConv2dPack(4, 4, 3, padding=1))
    wrapper = CPUBFloat16OptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        out = model(torch.randn(1, 3, 8, 8))
        after = torch.zeros(2, 2) @ torch.zeros(2, 2)
    assert out.dtype == torch.float32
    assert after.dtype == torch.bfloat16  # autocast is back on after it
    before = [p.detach().clone() for p in model.parameters()]
    wrapper.update_params(out.sum())
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert not torch.equal(before[2], after[2])  # the deformable weight
