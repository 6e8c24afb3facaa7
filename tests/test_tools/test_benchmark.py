"""Tests of ``tools/benchmark.py``: one tiny in-process measurement and the
report files (from fake measurements)."""
import importlib.util
import json
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'sparse_rcnn_r50_fpn_1x_coco.py')


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'benchmark_tool', osp.join(REPO, 'tools', 'benchmark.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.fixture(scope='module')
def tool():
    return _load_tool()


@pytest.fixture(scope='module')
def measured(tool):
    threads = torch.get_num_threads()
    try:
        return tool.measure(CONFIG, img_size=(64, 96), warmup=0, repeats=1,
                            device='cpu', threads=1, flops=True)
    finally:
        torch.set_num_threads(threads)


def test_params(tool, measured):
    params = measured['params']
    model, _ = tool.build_model(CONFIG)
    assert params['total'] == sum(p.numel() for p in model.parameters())
    assert params['total'] == 106_290_888
    assert params['backbone'] + params['neck'] + params['heads'] == \
        params['total']
    assert measured['proposals'] == 100
    assert measured['backbone'] == 'ResNet-50'


def test_flops_include_dynamic_conv_and_attention(measured):
    flops = measured['flops']
    assert flops['total'] > flops['backbone_neck'] > 0
    assert flops['heads'] == flops['total'] - flops['backbone_neck']
    # 6 stages x 100 proposals; DynamicConv: (S*S, C) @ (C, F) then
    # (S*S, F) @ (F, C), 2 FLOPs per multiply-add.
    stages, n, s2, c, f = 6, 100, 7 * 7, 256, 64
    dynamic_bmm = stages * n * 2 * (s2 * c * f + s2 * f * c)
    # self-attention among the proposals: Q K^T and A V, (n x n x C) each
    attention_bmm = stages * 2 * (2 * n * n * c)
    by_op = flops['heads_by_op']
    assert flops['heads'] >= dynamic_bmm
    assert by_op['bmm'] >= dynamic_bmm
    assert by_op['bmm'] + by_op.get('baddbmm', 0) == \
        dynamic_bmm + attention_bmm


def test_latency_and_memory(measured):
    lat = measured['latency']
    assert len(lat['runs']) == 1
    assert lat['total'] > 0 and lat['backbone_neck'] > 0 and lat['heads'] > 0
    assert measured['fps'] == pytest.approx(1 / lat['total'])
    assert measured['peak_mem_kind'] == 'cpu_rss_growth'
    assert measured['peak_mem_mib'] >= 0


def test_report_files(tool, tmp_path):
    def fake(name, params, gflops, ms):
        return dict(
            config=name, backbone='ResNet-50', proposals=100,
            params=dict(total=params, backbone=params // 4, neck=0,
                        heads=params - params // 4),
            flops=dict(total=gflops * 1e9, backbone_neck=gflops * 6e8,
                       heads=gflops * 4e8, heads_by_op={}),
            latency=dict(total=ms / 1e3, backbone_neck=ms / 2e3,
                         heads=ms / 2e3, runs=[ms / 1e3]),
            fps=1e3 / ms, peak_mem_mib=123.0, peak_mem_kind='cpu_rss_growth')

    results = [fake('model_a', 106_000_000, 150.0, 500.0),
               fake('model_b', 125_000_000, 230.0, 800.0),
               dict(config='model_c', error='RuntimeError: boom')]
    meta = dict(device='cpu', threads=1, torch=torch.__version__,
                img_size=[800, 1216], warmup=1, repeats=3)
    table = tool.write_report(results, meta, str(tmp_path))
    md = (tmp_path / 'benchmark.md').read_text()
    assert md == table
    assert '| config | backbone | proposals | params (M) | GFLOPs |' in md
    assert '| model_a | ResNet-50 | 100 | 106.0 | 150.0 | 250.0 | 250.0 | ' \
        '500.0 | 2.00 | 123 |' in md
    assert 'model_c | error: RuntimeError: boom' in md
    assert 'input: 1x3x800x1216' in md and '2 FLOPs per multiply-add' in md
    data = json.loads((tmp_path / 'benchmark.json').read_text())
    assert [r['config'] for r in data['results']] == \
        ['model_a', 'model_b', 'model_c']
    png = (tmp_path / 'benchmark.png').read_bytes()
    assert png.startswith(b'\x89PNG')
