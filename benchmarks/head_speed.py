"""Speed and memory of this package's Sparse R-CNN heads against
MMDetection's, at identical weights and inputs.

Both implementations get the same precomputed FPN features (R50-FPN shapes
of an ``--img-size`` input), the same ground truth and the same weights;
their runs alternate, and the median of ``--repeats`` runs is reported with
the ratio ours/mmdet. Modes: ``train`` (batch 2: proposals, all stages,
matching, losses, backward) and ``infer`` (batch 1, no grad).

    python benchmarks/head_speed.py                  # 100 and 300 proposals
    python benchmarks/head_speed.py --profile train  # torch.profiler table
    python benchmarks/head_speed.py --memory         # peak RSS, subprocesses
    python benchmarks/head_speed.py --boxes spread   # trained-like proposals
    python benchmarks/head_speed.py --model queryinst --proposals 100

``--model queryinst`` times QueryInst's heads (a dynamic mask head per
stage; the ground truth gets elliptic masks, and inference runs the heads
in eval mode and pastes the masks into the image); before timing it prints
the largest relative difference of the two implementations' losses and the
share of mask pixels on which they differ.

``--boxes image`` keeps the initial proposals (every box the whole image, so
every RoI pools from the coarsest level, as at the start of training);
``--boxes spread`` gives both heads the same proposal boxes of varied
position and size (2 % to 70 % of the image side), as a trained model has,
so that RoIs fall on every pyramid level.
"""
import argparse
import copy
import json
import os.path as osp
import statistics
import subprocess
import sys
import time
import warnings

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
OUR_CONFIG = osp.join(REPO, 'configs', 'sparse_rcnn_r50_fpn_1x_coco.py')
OUR_QUERYINST = osp.join(REPO, 'configs', 'queryinst',
                         'queryinst_r50_fpn_1x_coco.py')
# Set by --model: 'sparse_rcnn' or 'queryinst'.
MODEL = 'sparse_rcnn'


def mmdet_config_path() -> str:
    import mmdet
    if MODEL == 'queryinst':
        return osp.join(
            osp.dirname(mmdet.__file__), '.mim', 'configs', 'queryinst',
            'queryinst_r50_fpn_1x_coco.py')
    return osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'configs', 'sparse_rcnn',
        'sparse-rcnn_r50_fpn_1x_coco.py')


def our_config_path() -> str:
    return OUR_QUERYINST if MODEL == 'queryinst' else OUR_CONFIG


def build_heads(cfg_path: str, scope: str, num_proposals: int):
    """(rpn_head, roi_head) as the detector builds them."""
    from mmdet.registry import MODELS as MMDET_MODELS

    from mmdet_sparse.registry import MODELS
    model = Config.fromfile(cfg_path).model
    registry = MODELS if scope == 'mmdet_sparse' else MMDET_MODELS
    rpn = dict(model.rpn_head, num_proposals=num_proposals, _scope_=scope)
    roi = dict(
        model.roi_head,
        train_cfg=model.train_cfg.rcnn,
        test_cfg=Config(dict(model.test_cfg.rcnn, max_per_img=num_proposals)),
        _scope_=scope)
    return registry.build(rpn), registry.build(roi)


def spread_boxes(num_proposals: int) -> torch.Tensor:
    """``(N, 4)`` normalised ``(cx, cy, w, h)`` of varied position and size
    (log-uniform sides from 2 % to 70 % of the image)."""
    gen = torch.Generator().manual_seed(1)
    centre = torch.rand(num_proposals, 2, generator=gen)
    side = torch.exp(
        torch.empty(num_proposals, 2).uniform_(
            torch.log(torch.tensor(0.02)).item(),
            torch.log(torch.tensor(0.7)).item(), generator=gen))
    return torch.cat([centre, side], 1)


def head_pair(num_proposals: int, boxes: str = 'image'):
    """MMDetection's heads and ours, with MMDetection's initial weights."""
    torch.manual_seed(0)
    ref = build_heads(mmdet_config_path(), 'mmdet', num_proposals)
    for module in ref:
        module.init_weights()
    if boxes == 'spread':
        with torch.no_grad():
            ref[0].init_proposal_bboxes.weight.copy_(
                spread_boxes(num_proposals))
    if MODEL == 'queryinst':
        # Smaller box deltas keep the random heads' boxes inside the image,
        # as a trained model's are (MMDetection's CPU mask paste fails on a
        # box outside the image).
        with torch.no_grad():
            for head in ref[1].bbox_head:
                head.fc_reg.weight.mul_(0.1)
    ours = build_heads(our_config_path(), 'mmdet_sparse', num_proposals)
    for src, dst in zip(ref, ours):
        dst.load_state_dict(src.state_dict(), strict=True)
    return {'mmdet': ref, 'ours': ours}


def ellipse_masks(boxes: torch.Tensor, h: int, w: int):
    """``BitmapMasks`` with the ellipse inscribed in each box."""
    import numpy as np

    from mmdet.structures.mask import BitmapMasks
    ys, xs = np.mgrid[:h, :w] + 0.5
    masks = np.zeros((len(boxes), h, w), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        rx, ry = max((x1 - x0) / 2, 1), max((y1 - y0) / 2, 1)
        masks[k] = (((xs - (x0 + x1) / 2) / rx)**2 +
                    ((ys - (y0 + y1) / 2) / ry)**2) <= 1
    return BitmapMasks(masks, h, w)


def make_inputs(batch: int, img_size, num_gts: int, seed: int = 0):
    """FPN features (strides 4..32, 256 channels) and data samples."""
    from mmdet.structures import DetDataSample
    gen = torch.Generator().manual_seed(seed)
    h, w = img_size
    feats = [
        torch.randn(batch, 256, h // s, w // s, generator=gen)
        for s in (4, 8, 16, 32)
    ]
    samples = []
    for i in range(batch):
        xy = torch.rand(num_gts, 2, generator=gen) * torch.tensor([w, h]) * .6
        wh = (torch.rand(num_gts, 2, generator=gen) * .35 + .02) * \
            torch.tensor([w, h])
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                scale_factor=(1.0, 1.0), img_id=i))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1),
            labels=torch.randint(0, 80, (num_gts, ), generator=gen))
        if MODEL == 'queryinst':
            sample.gt_instances.masks = ellipse_masks(
                sample.gt_instances.bboxes, h, w)
        samples.append(sample)
    return feats, samples


def train_step(heads, feats, samples) -> dict:
    rpn, roi = heads
    roi.train()
    feats = [f.detach().requires_grad_() for f in feats]
    _, proposals = rpn.loss_and_predict(feats, copy.deepcopy(samples))
    losses = roi.loss(feats, proposals, samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    for module in heads:
        module.zero_grad(set_to_none=True)
    return losses


@torch.no_grad()
def infer_step(heads, feats, samples) -> list:
    rpn, roi = heads
    roi.eval()  # the mask heads' BatchNorm
    return roi.predict(feats, rpn.predict(feats, samples), samples,
                       rescale=True)


def parity(pairs, img_size) -> dict:
    """Largest relative loss difference (train, batch 2) and the share of
    mask pixels that differ (inference, batch 1), ours against mmdet."""
    feats, samples = make_inputs(2, img_size, num_gts=7)
    losses = {n: train_step(h, feats, samples) for n, h in pairs.items()}
    loss_diff = max(
        ((losses['ours'][k] - v).abs() / v.abs().clamp(min=1e-12)).item()
        for k, v in losses['mmdet'].items())
    feats, samples = make_inputs(1, img_size, num_gts=7)
    preds = {n: infer_step(h, feats, samples)[0] for n, h in pairs.items()}
    order = {n: torch.argsort(p.scores, descending=True, stable=True)
             for n, p in preds.items()}
    masks = {n: p.masks[order[n]] for n, p in preds.items()}
    differ = (masks['ours'] != masks['mmdet']).float().mean().item()
    return dict(loss_rel_diff=loss_diff, mask_pixels_differ=differ)


STEPS = {'train': (train_step, 2), 'infer': (infer_step, 1)}


def time_modes(num_proposals: int, modes, repeats: int, img_size,
               boxes: str = 'image'):
    """Median seconds per implementation and mode, runs alternating."""
    pairs = head_pair(num_proposals, boxes)
    if MODEL == 'queryinst':
        print(f'{num_proposals} proposals, parity: {parity(pairs, img_size)}')
    results = {}
    for mode in modes:
        step, batch = STEPS[mode]
        feats, samples = make_inputs(batch, img_size, num_gts=7)
        times = {name: [] for name in pairs}
        for name, heads in pairs.items():  # warm-up
            step(heads, feats, samples)
        for _ in range(repeats):
            for name, heads in pairs.items():
                start = time.perf_counter()
                step(heads, feats, samples)
                times[name].append(time.perf_counter() - start)
        results[mode] = {n: statistics.median(t) for n, t in times.items()}
    return results


def full_model_share(img_size, num_proposals: int, repeats: int) -> dict:
    """Seconds of backbone+FPN against our heads at batch-1 inference."""
    from mmdet_sparse.registry import MODELS
    cfg = Config.fromfile(OUR_CONFIG).model
    cfg.backbone.init_cfg = None
    cfg.rpn_head.num_proposals = num_proposals
    cfg.test_cfg.rcnn.max_per_img = num_proposals
    cfg['_scope_'] = 'mmdet_sparse'
    model = MODELS.build(cfg).eval()
    _, samples = make_inputs(1, img_size, 7)
    img = torch.randn(1, 3, *img_size)
    heads = (model.rpn_head, model.roi_head)
    t_feat, t_head = [], []
    with torch.no_grad():
        for i in range(repeats + 1):
            start = time.perf_counter()
            feats = model.extract_feat(img)
            mid = time.perf_counter()
            infer_step(heads, feats, samples)
            end = time.perf_counter()
            if i:
                t_feat.append(mid - start)
                t_head.append(end - mid)
    feat, head = statistics.median(t_feat), statistics.median(t_head)
    return dict(backbone_fpn=feat, heads=head, head_share=head / (feat + head))


def peak_memory(impl: str, mode: str, num_proposals: int, img_size,
                boxes: str = 'image') -> float:
    """Peak RSS growth (MiB) of one step, in a fresh process (Linux)."""
    out = subprocess.run(
        [sys.executable, __file__, '--child', impl, mode, str(num_proposals),
         str(img_size[0]), str(img_size[1]), '--boxes', boxes, '--model',
         MODEL],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])['peak_mib']


def _proc_status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def child(impl: str, mode: str, num_proposals: int, img_size,
          boxes: str) -> None:
    """One step in this process; prints the peak RSS growth it caused."""
    import ctypes
    import gc
    heads = head_pair(num_proposals, boxes)[impl]
    step, batch = STEPS[mode]
    feats, samples = make_inputs(batch, img_size, num_gts=7)
    gc.collect()
    ctypes.CDLL('libc.so.6').malloc_trim(0)  # return freed build memory
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak (VmHWM) to the current RSS
    before = _proc_status_kib('VmRSS')
    step(heads, feats, samples)
    peak = _proc_status_kib('VmHWM')
    print(json.dumps(dict(peak_mib=(peak - before) / 1024)))


def profile(mode: str, num_proposals: int, img_size, impl: str,
            boxes: str) -> None:
    heads = head_pair(num_proposals, boxes)[impl]
    step, batch = STEPS[mode]
    feats, samples = make_inputs(batch, img_size, num_gts=7)
    step(heads, feats, samples)
    with torch.profiler.profile() as prof:
        step(heads, feats, samples)
    print(prof.key_averages().table(sort_by='self_cpu_time_total',
                                    row_limit=25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--proposals', type=int, nargs='+',
                        default=[100, 300])
    parser.add_argument('--modes', nargs='+', default=['train', 'infer'],
                        choices=list(STEPS))
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--img-size', type=int, nargs=2, default=[800, 1216])
    parser.add_argument('--profile', choices=list(STEPS))
    parser.add_argument('--impl', default='ours', choices=['ours', 'mmdet'])
    parser.add_argument('--memory', action='store_true')
    parser.add_argument('--boxes', default='image',
                        choices=['image', 'spread'],
                        help='initial proposals: whole image or spread')
    parser.add_argument('--full-model', action='store_true',
                        help='also time backbone+FPN to give the heads share')
    parser.add_argument('--model', default='sparse_rcnn',
                        choices=['sparse_rcnn', 'queryinst'],
                        help='Sparse R-CNN heads, or QueryInst (with masks)')
    parser.add_argument('--child', nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global MODEL
    MODEL = args.model
    warnings.filterwarnings('ignore')
    MMLogger.get_instance('mmengine', log_level='ERROR')
    import mmdet_sparse  # noqa: F401

    if args.child:
        impl, mode, num, h, w = args.child
        return child(impl, mode, int(num), (int(h), int(w)), args.boxes)
    img_size = tuple(args.img_size)
    if args.profile:
        for num in args.proposals:
            print(f'== {args.impl} {args.profile}, {num} proposals')
            profile(args.profile, num, img_size, args.impl, args.boxes)
        return
    print(f'{args.model} heads, CPU threads: {torch.get_num_threads()}, '
          f'input {img_size}, proposal boxes: {args.boxes}, median of '
          f'{args.repeats}, runs alternating\n')
    print('| proposals | mode | mmdet (s) | ours (s) | ours/mmdet |')
    print('|---|---|---|---|---|')
    for num in args.proposals:
        res = time_modes(num, args.modes, args.repeats, img_size,
                         args.boxes)
        for mode, t in res.items():
            print(f"| {num} | {mode} (batch {STEPS[mode][1]}) | "
                  f"{t['mmdet']:.3f} | {t['ours']:.3f} | "
                  f"{t['ours'] / t['mmdet']:.2f} |", flush=True)
    if args.memory:
        print('\n| proposals | mode | mmdet peak (MiB) | ours peak (MiB) | '
              'ours/mmdet |')
        print('|---|---|---|---|---|')
        for num in args.proposals:
            for mode in args.modes:
                ref = peak_memory('mmdet', mode, num, img_size, args.boxes)
                ours = peak_memory('ours', mode, num, img_size, args.boxes)
                print(f'| {num} | {mode} | {ref:.0f} | {ours:.0f} | '
                      f'{ours / ref:.2f} |', flush=True)
    if args.full_model:
        share = full_model_share(img_size, max(args.proposals), args.repeats)
        print(f"\nFull model, batch-1 inference, {max(args.proposals)} "
              f"proposals: backbone+FPN {share['backbone_fpn']:.2f} s, heads "
              f"{share['heads']:.2f} s, heads share {share['head_share']:.0%}")


if __name__ == '__main__':
    main()
