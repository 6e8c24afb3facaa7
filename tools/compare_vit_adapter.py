"""Compare this package's ``ViTAdapter`` with the published ViT-Adapter code.

Runs the ViT-Adapter authors' detection backbone from a local checkout of
their repository (nothing of it is copied here) next to this package's
``ViTAdapter``, both with the DeiT-S Sparse R-CNN settings, loads one state
dict into both with ``strict=True`` and prints the output differences level
by level. The state dict is random (published layout) unless ``--checkpoint``
names a released detector file (``{'state_dict': ...}``, read with
``weights_only=True``), whose ``backbone.*`` entries are used; ``--config``
also loads the whole file strictly into the detector that config builds.

Their imports of MMDetection 2 / MMCV 1 helpers are replaced by small
in-process stand-ins, and their compiled deformable-attention op by mmcv's
pure-PyTorch function, so it runs on CPU with this package's environment.

Usage::

    python tools/compare_vit_adapter.py --repo PATH/TO/ViT-Adapter \
        [--checkpoint FILE] [--config configs/...py] [--sizes 224x352 ...]
"""
import argparse
import importlib
import os
import sys
import types
from typing import Dict

import torch
from mmengine.model import BaseModule, revert_sync_batchnorm
from torch import Tensor


def load_published_backbone_class(repo: str) -> type:
    """Import their ``ViTAdapter`` class from ``repo/detection``."""
    det = os.path.join(repo, 'detection')
    backbones = os.path.join(det, 'mmdet_custom', 'models', 'backbones')
    if not os.path.isfile(os.path.join(backbones, 'vit_adapter.py')):
        raise FileNotFoundError(
            f'{backbones}/vit_adapter.py not found: --repo must be the root '
            'of a ViT-Adapter checkout (the folder holding detection/)')
    from mmcv.ops.multi_scale_deform_attn import \
        multi_scale_deformable_attn_pytorch

    class _Registry:

        def register_module(self, *args, **kwargs):
            return lambda cls: cls

    class _DeformAttnFunction:

        @staticmethod
        def apply(value, shapes, level_start, locations, weights, step):
            return multi_scale_deformable_attn_pytorch(
                value, shapes, locations, weights)

    def stub(name: str, path: str = None, **attrs) -> None:
        module = types.ModuleType(name)
        if path is not None:
            module.__path__ = [path]
        module.__dict__.update(attrs)
        sys.modules[name] = module

    stub('mmdet.models.builder', BACKBONES=_Registry())
    stub('mmcv.runner', BaseModule=BaseModule)
    stub('mmcv_custom', my_load_checkpoint=None)
    stub('ops', os.path.join(det, 'ops'))
    stub('ops.functions', MSDeformAttnFunction=_DeformAttnFunction)
    import mmdet.utils
    if not hasattr(mmdet.utils, 'get_root_logger'):
        mmdet.utils.get_root_logger = lambda: None
    stub('published_vit_adapter', backbones)
    return importlib.import_module('published_vit_adapter.vit_adapter')\
        .ViTAdapter


def build_published(cls: type) -> torch.nn.Module:
    """Their backbone with the DeiT-S Sparse R-CNN config's arguments."""
    model = cls(
        patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4,
        drop_path_rate=0.2, conv_inplane=64, n_points=4, deform_num_heads=6,
        cffn_ratio=0.25, deform_ratio=1.0,
        interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]],
        window_attn=[True, True, False] * 4,
        window_size=[14, 14, None] * 4, pretrained=None)
    return revert_sync_batchnorm(model)


def random_state(model: torch.nn.Module, seed: int) -> Dict[str, Tensor]:
    """Distinct small random values for every entry of ``model``."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith('num_batches_tracked'):
            state[key] = value
        elif key.endswith('running_var'):
            state[key] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=gen) * 0.05
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repo', required=True,
                        help='root of a ViT-Adapter checkout')
    parser.add_argument('--checkpoint', help='released detector file')
    parser.add_argument('--config', help='this package\'s config for a '
                        'strict load of the whole --checkpoint')
    parser.add_argument('--sizes', nargs='+', default=['224x352', '160x224'],
                        help='input HxW, multiples of 32')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    from mmdet_sparse.models.backbones import ViTAdapter
    from mmdet_sparse.registry import MODELS
    from mmdet_sparse.utils import register_all_modules

    torch.manual_seed(args.seed)
    theirs = build_published(load_published_backbone_class(args.repo)).eval()
    ours = ViTAdapter().eval()
    their_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    print(f'state dict entries: theirs {len(their_shapes)}, ours '
          f'{len(our_shapes)}, same names and shapes: '
          f'{their_shapes == our_shapes}')
    print('parameters: theirs '
          f'{sum(p.numel() for p in theirs.parameters()):,}, ours '
          f'{sum(p.numel() for p in ours.parameters()):,}')

    if args.checkpoint:
        full = torch.load(args.checkpoint, map_location='cpu',
                          weights_only=True)
        full = full.get('state_dict', full)
        state = {k[len('backbone.'):]: v for k, v in full.items()
                 if k.startswith('backbone.')}
        if args.config:
            from mmengine.config import Config
            register_all_modules()
            cfg = Config.fromfile(args.config)
            cfg.model.backbone.init_cfg = None
            detector = revert_sync_batchnorm(MODELS.build(cfg.model))
            detector.load_state_dict(full, strict=True)
            print(f'{args.checkpoint}: {len(full)} entries load into '
                  f'{args.config} with strict=True')
    else:
        state = random_state(theirs, args.seed + 1)
    theirs.load_state_dict(state, strict=True)
    ours.load_state_dict(state, strict=True)

    gen = torch.Generator().manual_seed(args.seed + 2)
    for size in args.sizes:
        h, w = (int(s) for s in size.split('x'))
        x = torch.randn(1, 3, h, w, generator=gen)
        with torch.no_grad():
            outs = zip(theirs(x), ours(x))
        for level, (a, b) in enumerate(outs, 1):
            rel = ((a - b).norm() / a.norm()).item()
            print(f'{h}x{w} level {level} {tuple(a.shape)}: max abs diff '
                  f'{(a - b).abs().max().item():.2e}, relative {rel:.2e}')


if __name__ == '__main__':
    main()
