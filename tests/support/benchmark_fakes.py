"""Fake benchmark results (no measuring) shared by the report and chart
tests of ``mmdet_sparse.benchmark``."""
import os.path as osp

from mmdet_sparse.benchmark import PUBLISHED_AP

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def fake_result(name: str, params: int, gflops: float, ms: float) -> dict:
    """A measured result of config ``name`` with the given parameter count,
    GFLOPs and latency (ms); its published AP as :func:`measure_config`
    would set it."""
    result = dict(
        config=name, backbone='ResNet-50', proposals=100,
        params=dict(total=params, backbone=params // 4, neck=0,
                    heads=params - params // 4),
        flops=dict(total=gflops * 1e9, backbone_neck=gflops * 6e8,
                   heads=gflops * 4e8, heads_by_op={}),
        latency=dict(total=ms / 1e3, backbone_neck=ms / 2e3,
                     heads=ms / 2e3, runs=[ms / 1e3],
                     runs_backbone_neck=[ms / 2e3], runs_heads=[ms / 2e3]),
        fps=1e3 / ms, peak_mem_mib=123.0, peak_mem_kind='cpu_rss_growth')
    if name in PUBLISHED_AP:
        result['published_ap'] = dict(PUBLISHED_AP[name])
    return result
