"""Tests of the command line of ``tools/benchmark.py`` (the library behind
it, ``mmdet_sparse.benchmark``, is tested in ``tests/test_benchmark``):
the redraw from a saved JSON, the load-average warning of a measurement
(the measuring child faked), and the options."""
import json
import os
from unittest import mock

import pytest
import torch

from support.helpers import load_script
from support.benchmark_fakes import fake_result

from mmdet_sparse.benchmark import write_report




def _load_tool():
    return load_script('tools', 'benchmark.py', name='benchmark_tool')


@pytest.fixture(scope='module')
def tool():
    return _load_tool()


def _fake(name, params=106_000_000, gflops=150.0, ms=500.0):
    return fake_result(name, params, gflops, ms)


def test_from_json_redraws_the_report(tool, tmp_path):
    results = [_fake('model_a'),
               _fake('sparse_rcnn_swin_t_fpn_3x_coco', 110_000_000, 172.0,
                     600.0),
               dict(config='model_c', error='RuntimeError: boom')]
    meta = dict(device='cpu', threads=1, torch=torch.__version__,
                img_size=[800, 1216], warmup=1, repeats=3)
    md = write_report(results, meta, str(tmp_path))
    # redrawn from the JSON without measuring: the same report
    again = tmp_path / 'again'
    assert tool.main(['--from-json', str(tmp_path / 'benchmark.json'),
                      '--out-dir', str(again)]) == 1  # model_c failed
    assert (again / 'benchmark.md').read_text() == md
    assert (again / 'benchmark.png').read_bytes().startswith(b'\x89PNG')


def test_measurement_warns_about_load(tool, tmp_path, capsys):
    children = []

    def child(config, args, flops=True):
        children.append((config, args.img_size, args.threads))
        return _fake('sparse_rcnn_r50_fpn_3x_coco')

    with mock.patch.object(tool, 'run_child', child), \
            mock.patch.object(os, 'getloadavg',
                              side_effect=[(7.5, 0, 0), (9.0, 0, 0)]), \
            mock.patch.object(os, 'sched_getaffinity', create=True,
                              return_value={0, 1}):
        assert tool.main(['configs/sparse_rcnn_r50_fpn_3x_coco.py',
                          '--img-size', '64', '96', '--threads', '1',
                          '--out-dir', str(tmp_path)]) == 0
    assert children == [('configs/sparse_rcnn_r50_fpn_3x_coco.py', [64, 96],
                         1)]
    err = capsys.readouterr().err.splitlines()
    warnings = [line for line in err if 'warning' in line]
    assert len(warnings) == 2
    assert 'load average 7.50 at the start' in warnings[0]
    assert 'load average 9.00 at the end' in warnings[1]
    for line in warnings:
        assert '2 usable cores' in line and 'inflated' in line
    assert err.index(warnings[0]) < err.index(
        'measuring configs/sparse_rcnn_r50_fpn_3x_coco.py ...') < \
        err.index(warnings[1])
    data = json.loads((tmp_path / 'benchmark.json').read_text())
    load = data['meta']['load_average']
    assert (load['cores'], load['start'], load['end']) == (2, 7.5, 9.0)
    assert len(load['warnings']) == 2
    md = (tmp_path / 'benchmark.md').read_text()
    assert '- load average (1 min): 7.50 at the start, 9.00 at the end of ' \
        'the measurements; 2 usable cores' in md
    assert '| sparse_rcnn_r50_fpn_3x_coco | ResNet-50 | 100 |' in md


def test_rounds_are_interleaved_and_pooled(tool, tmp_path, capsys):
    """``--rounds 3``: a fresh child per config and round, in the order
    given, reversed, given; FLOPs counted in the first round only; the
    report's medians pool the runs of all rounds."""
    calls = []
    ms = {'a.py': [100.0, 300.0, 200.0], 'b.py': [50.0, 40.0, 60.0]}

    def child(config, args, flops=True):
        calls.append((config, flops))
        result = _fake(config[:-3], ms=ms[config].pop(0))
        if not flops:
            del result['flops']
        return result

    with mock.patch.object(tool, 'run_child', child):
        assert tool.main(['a.py', 'b.py', '--rounds', '3', '--out-dir',
                          str(tmp_path)]) == 0
    assert calls == [('a.py', True), ('b.py', True), ('b.py', False),
                     ('a.py', False), ('a.py', False), ('b.py', False)]
    err = capsys.readouterr().err
    assert 'measuring b.py (round 2/3) ...' in err
    data = json.loads((tmp_path / 'benchmark.json').read_text())
    assert data['meta']['rounds'] == 3
    a, b = data['results']
    assert a['latency']['round_totals'] == [0.1, 0.3, 0.2]
    assert a['latency']['total'] == pytest.approx(0.2)
    assert b['latency']['total'] == pytest.approx(0.05)
    assert a['rounds'] == 3 and 'flops' in a
    md = (tmp_path / 'benchmark.md').read_text()
    assert 'median of 9 runs (3 in each of 3 interleaved rounds' in md
    with pytest.raises(SystemExit):
        tool.main(['a.py', '--rounds', '0'])
    assert '--rounds must be at least 1, got 0' in capsys.readouterr().err


def test_options(tool):
    args = tool.parse_args(['a.py', 'b.py', '--backend', 'openvino',
                            '--precision', 'bf16', '--threads', '2',
                            '--img-size', '512', '768', '--no-flops'])
    assert args.configs == ['a.py', 'b.py']
    assert (args.backend, args.precision, args.threads) == \
        ('openvino', 'bf16', 2)
    assert args.img_size == [512, 768] and args.no_flops
    defaults = tool.parse_args(['a.py'])
    assert (defaults.backend, defaults.precision, defaults.device,
            defaults.out_dir) == ('pytorch', 'fp32', 'cpu',
                                  'work_dirs/benchmark')
    with pytest.raises(SystemExit, match='needs --backend'):
        tool.main(['a.py', '--precision', 'int8'])
    with pytest.raises(SystemExit, match='runs on --device cpu'):
        tool.main(['a.py', '--backend', 'onnxruntime', '--device', 'cuda'])
    with pytest.raises(SystemExit, match='give config files'):
        tool.main([])


def test_interrupted_rounds_keep_the_finished_ones(tool, tmp_path):
    """A run stopped in round 3 of 3 leaves the report of rounds 1-2
    (rewritten whole after each round), which says that a round is
    missing; the final report of a complete run does not."""
    ms = {'a.py': [100.0, 300.0], 'b.py': [50.0, 40.0]}

    def child(config, args, flops=True):
        if not ms[config]:
            raise KeyboardInterrupt  # the user stops it in round 3
        return _fake(config[:-3], ms=ms[config].pop(0))

    with mock.patch.object(tool, 'run_child', child), \
            pytest.raises(KeyboardInterrupt):
        tool.main(['a.py', 'b.py', '--rounds', '3', '--out-dir',
                   str(tmp_path)])
    data = json.loads((tmp_path / 'benchmark.json').read_text())
    assert (data['meta']['rounds'], data['meta']['rounds_planned']) == (2, 3)
    a, b = data['results']
    assert a['latency']['round_totals'] == [0.1, 0.3]
    assert b['latency']['round_totals'] == [0.05, 0.04]
    md = (tmp_path / 'benchmark.md').read_text()
    assert 'median of 6 runs (3 in each of 2 interleaved rounds' in md
    assert 'only 2 of the 3 rounds planned are in this report' in md
    assert not [p for p in os.listdir(tmp_path) if p.endswith('.tmp')]

    ms.update({'a.py': [100.0] * 3, 'b.py': [50.0] * 3})
    with mock.patch.object(tool, 'run_child', child):
        assert tool.main(['a.py', 'b.py', '--rounds', '3', '--out-dir',
                          str(tmp_path)]) == 0
    md = (tmp_path / 'benchmark.md').read_text()
    assert 'median of 9 runs' in md and 'rounds planned' not in md
