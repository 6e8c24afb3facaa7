"""Tests of ``tools/benchmark.py``: one tiny in-process measurement and the
report files (from fake measurements)."""
import copy
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
    # the parts are timed within each run: they add up to its total
    for total, feat, heads in zip(lat['runs'], lat['runs_backbone_neck'],
                                  lat['runs_heads']):
        assert feat + heads == pytest.approx(total, rel=1e-12)
    assert lat['backbone_neck'] <= lat['total']
    assert lat['heads'] <= lat['total']
    assert measured['fps'] == pytest.approx(1 / lat['total'])
    assert measured['peak_mem_kind'] == 'cpu_rss_growth'
    assert measured['peak_mem_mib'] >= 0


def test_timed_parts_are_the_prediction(tool):
    model, _ = tool.build_model(
        osp.join(REPO, 'configs', 'sparse_rcnn_r18_fpn_shapes_demo.py'))
    inputs, samples = tool.make_inputs((64, 96))
    with torch.no_grad():
        ref = model.predict(inputs, copy.deepcopy(samples))[0].pred_instances
        feat_s, heads_s, out = tool.predict_in_parts(model, inputs, samples)
    got = out[0].pred_instances
    assert feat_s > 0 and heads_s > 0
    assert torch.equal(got.bboxes, ref.bboxes)
    assert torch.equal(got.scores, ref.scores)
    assert torch.equal(got.labels, ref.labels)
    times = tool.time_parts(model, inputs, samples, 3, lambda: None)
    assert [len(v) for v in times.values()] == [3, 3, 3]
    for total, feat, heads in zip(*times.values()):
        assert total == feat + heads


def test_pareto_front(tool):
    #          fast+weak  dominated  slow+strong  tie in AP, slower  best
    points = [(1.0, 40.0), (2.0, 39.0), (5.0, 48.0), (6.0, 48.0),
              (3.0, 45.0)]
    assert tool.pareto_front(points) == [0, 4, 2]
    assert tool.pareto_front([(2.0, 40.0), (2.0, 40.0)]) == [0, 1]
    assert tool.pareto_front([]) == []


def test_published_ap_sources(tool):
    zoo = {'sparse_rcnn_r50_fpn_1x_coco': 37.9,
           'sparse_rcnn_r50_fpn_3x_coco': 42.8,
           'sparse_rcnn_r50_fpn_300pro_crop_3x_coco': 45.0,
           'sparse_rcnn_r101_fpn_3x_coco': 44.2,
           'sparse_rcnn_r101_fpn_300pro_crop_3x_coco': 46.2,
           'sparse_rcnn_swin_t_fpn_3x_coco': 47.9,
           'sparse_rcnn_pvtv2_b2_fpn_3x_coco': 45.7,
           'sparse_rcnn_deit_adapter_small_fpn_3x_coco': 48.1}
    assert {k: v['ap'] for k, v in tool.PUBLISHED_AP.items()} == zoo
    for name, entry in tool.PUBLISHED_AP.items():
        assert osp.isfile(osp.join(REPO, 'configs', name + '.py')), name
        assert entry['source']
        if not entry['same_setting']:
            assert entry['note'], name


def _fake(tool, name, params, gflops, ms):
    result = dict(
        config=name, backbone='ResNet-50', proposals=100,
        params=dict(total=params, backbone=params // 4, neck=0,
                    heads=params - params // 4),
        flops=dict(total=gflops * 1e9, backbone_neck=gflops * 6e8,
                   heads=gflops * 4e8, heads_by_op={}),
        latency=dict(total=ms / 1e3, backbone_neck=ms / 2e3,
                     heads=ms / 2e3, runs=[ms / 1e3]),
        fps=1e3 / ms, peak_mem_mib=123.0, peak_mem_kind='cpu_rss_growth')
    if name in tool.PUBLISHED_AP:
        result['published_ap'] = dict(tool.PUBLISHED_AP[name])
    return result


def test_chart_labels_do_not_overlap(tool, tmp_path):
    # eight configs crowded together, as on a noisy CPU
    names = sorted(tool.PUBLISHED_AP)
    results = [_fake(tool, name, 106_000_000 + i * 400_000, 126.0 + i,
                     500.0 + 3 * i) for i, name in enumerate(names)]
    results.append(_fake(tool, 'sparse_rcnn_timm_resnet50_fpn_3x_coco',
                         106_300_000, 127.0, 501.0))
    drawn = tool.plot(results, str(tmp_path / 'chart.png'))
    assert set(drawn) == {'latency vs params (M)', 'latency vs GFLOPs',
                          'accuracy vs latency'}
    assert len(drawn['accuracy vs latency']) == 8  # configs with an AP
    assert len(drawn['latency vs GFLOPs']) == 9
    for labels in drawn.values():
        # the labels as rendered, not as planned, are pairwise disjoint
        for i, (text_a, a) in enumerate(labels):
            for text_b, b in labels[i + 1:]:
                assert not a.overlaps(b), (text_a, text_b)
    labels = [text for text, _ in drawn['accuracy vs latency']]
    assert 'pvtv2_b2_fpn_3x_coco*' in labels
    assert 'r50_fpn_3x_coco' in labels


def test_report_files(tool, tmp_path):
    results = [_fake(tool, 'model_a', 106_000_000, 150.0, 500.0),
               _fake(tool, 'model_b', 125_000_000, 230.0, 800.0),
               _fake(tool, 'sparse_rcnn_swin_t_fpn_3x_coco', 110_000_000,
                     172.0, 600.0),
               _fake(tool, 'sparse_rcnn_r50_fpn_3x_coco', 106_000_000, 126.0,
                     450.0),
               dict(config='model_c', error='RuntimeError: boom')]
    meta = dict(device='cpu', threads=1, torch=torch.__version__,
                img_size=[800, 1216], warmup=1, repeats=3)
    table = tool.write_report(results, meta, str(tmp_path))
    md = (tmp_path / 'benchmark.md').read_text()
    assert md == table
    assert '| config | backbone | proposals | params (M) | GFLOPs |' in md
    assert '| model_a | ResNet-50 | 100 | 106.0 | 150.0 | 250.0 | 250.0 | ' \
        '500.0 | 2.00 | 123 | - |' in md
    assert '| sparse_rcnn_swin_t_fpn_3x_coco | ResNet-50 | 100 | 110.0 | ' \
        '172.0 | 300.0 | 300.0 | 600.0 | 1.67 | 123 | 47.9* |' in md
    assert '| sparse_rcnn_r50_fpn_3x_coco | ResNet-50 | 100 | 106.0 | ' \
        '126.0 | 225.0 | 225.0 | 450.0 | 2.22 | 123 | 42.8 |' in md
    assert '- sparse_rcnn_swin_t_fpn_3x_coco: 47.9* — Swin Transformer ' \
        'paper' in md
    assert 'MMDetection 3.3.0 model zoo' in md
    assert 'model_c | error: RuntimeError: boom' in md
    assert 'input: 1x3x800x1216' in md and '2 FLOPs per multiply-add' in md
    data = json.loads((tmp_path / 'benchmark.json').read_text())
    assert [r['config'] for r in data['results']] == \
        ['model_a', 'model_b', 'sparse_rcnn_swin_t_fpn_3x_coco',
         'sparse_rcnn_r50_fpn_3x_coco', 'model_c']
    png = (tmp_path / 'benchmark.png').read_bytes()
    assert png.startswith(b'\x89PNG')
    # redrawn from the JSON without measuring: the same report
    again = tmp_path / 'again'
    assert tool.main(['--from-json', str(tmp_path / 'benchmark.json'),
                      '--out-dir', str(again)]) == 1  # model_c failed
    assert (again / 'benchmark.md').read_text() == md
    assert (again / 'benchmark.png').read_bytes().startswith(b'\x89PNG')
