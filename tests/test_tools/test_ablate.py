"""tools/analysis_tools/ablate.py: resume logic, table and chart with a
stand-in trainer, and one real 1-epoch run on a handful of images."""
import json
import os.path as osp
import sys

import pytest
import torch
from support.helpers import REPO, load_script
from support.tool_runs import run_tool

DEMO = osp.join(REPO, 'configs', 'ablations', 'demo')


def _tool():
    return load_script('tools', 'analysis_tools', 'ablate.py',
                       name='ablate_tool')


class _FakeTrain:
    """Stands in for training: AP from the seed; fails on call ``fail``."""

    def __init__(self, fail=None):
        self.calls, self.fail = [], fail

    def __call__(self, config, seed, epochs, data_root, work_dir):
        self.calls.append((osp.basename(config), seed))
        if len(self.calls) == self.fail:
            raise RuntimeError('interrupted')
        ap = 0.3 + 0.01 * seed + 0.1 * ('grid' in config)
        return {'coco/bbox_mAP': ap, 'coco/bbox_mAP_50': ap + 0.2,
                'coco/bbox_mAP_75': ap - 0.1}


def test_rows_are_kept_as_they_finish_and_skipped_on_rerun(tmp_path):
    tool = _tool()
    configs = [osp.join(DEMO, 't6_grid.py'), osp.join(DEMO, 't6_image.py')]
    work = str(tmp_path / 'work')
    crashing = _FakeTrain(fail=3)
    with pytest.raises(RuntimeError):
        tool.run(configs, [0, 1], 2, 'data', work, train=crashing)
    rows = tool.load_results(osp.join(work, 'results.json'))
    assert [(r['variant'], r['seed']) for r in rows] == [('t6_grid', 0),
                                                         ('t6_grid', 1)]
    resumed = _FakeTrain()
    rows = tool.run(configs, [0, 1], 2, 'data', work, train=resumed)
    assert resumed.calls == [('t6_image.py', 0), ('t6_image.py', 1)]
    assert len(rows) == 4
    # Another budget is another row.
    longer = _FakeTrain()
    tool.run(configs[:1], [0], 3, 'data', work, train=longer)
    assert longer.calls == [('t6_grid.py', 0)]
    rows = tool.load_results(osp.join(work, 'results.json'))
    assert len(rows) == 5 and rows[0]['config'] == osp.join(
        'configs', 'ablations', 'demo', 't6_grid.py')
    for row in rows:  # when, where and with what code each row trained
        assert row['finished'].endswith('Z') and row['torch'] == \
            torch.__version__
        assert f'{torch.get_num_threads()} torch threads' in row['machine']
        assert row['commit'] is None or len(row['commit']) >= 7

    table = tool.write_table(rows, str(tmp_path / 'table.md'))
    lines = {line.split(' | ')[0][2:]: line for line in table.splitlines()
             if line.startswith('| t6_')}
    grid = [line for line in table.splitlines()
            if line.startswith('| t6_grid | T6 Grid | 2 |')][0]
    assert '| 0 1 | 40.0 / 41.0 | 40.5 ± 0.7 | 60.5 ± 0.7 | 30.5 ± 0.7 | ' \
        '41.0 | 59.4 | 44.2 |' in grid
    assert '| T6 Image | 2 | 0 1 | 30.0 / 31.0 | 30.5 ± 0.7 |' in \
        lines['t6_image']
    assert '| 3 | 0 | 40.0 | 40.0 |' in table
    assert table.count('### Table 6') == 1
    more = rows + [dict(rows[0], variant='t10_pos_encoding'),
                   dict(rows[0], variant='t3_static_head')]
    titles = [line for line in tool.write_table(
        more, str(tmp_path / 'more.md')).splitlines()
              if line.startswith('### ')]
    assert titles == ['### Table 3', '### Table 6', '### Table 10']
    tool.plot(rows, str(tmp_path / 'chart.png'))
    assert osp.getsize(tmp_path / 'chart.png') > 1000


def test_report_only(tmp_path, capsys):
    tool = _tool()
    work = tmp_path / 'work'
    tool.run([osp.join(DEMO, 't8_stages_1.py')], [0], 1, 'data', str(work),
             train=_FakeTrain())
    assert tool.main(['--report-only', '--work-dir', str(work)]) == 0
    assert '| t8_stages_1 | T8 1 stage | 1 | 0 | 30.0 | 30.0 |' in \
        capsys.readouterr().out
    assert (work / 'ablation.png').is_file()


def test_coco_configs_are_refused(tmp_path):
    tool = _tool()
    config = osp.join(REPO, 'configs', 'ablations', 't6_grid.py')
    with pytest.raises(ValueError, match='not a shapes-demo config'):
        tool.train_variant(config, 0, 1, str(tmp_path), str(tmp_path))


def test_one_epoch_on_a_handful_of_images(tmp_path):
    """A real run: the 'dataset' variant (its hook in a real Runner) for
    one epoch on 4 train and 2 val images."""
    from mmdet_sparse.datasets.synthetic_shapes import \
        generate_shapes_dataset
    root = tmp_path / 'shapes'
    generate_shapes_dataset(root, num_train=4, num_val=2, img_size=(64, 64),
                            seed=5)
    work = tmp_path / 'work'
    config = osp.join(DEMO, 't6_dataset.py')
    # In its own process, as a user runs it (a Runner with data-loader
    # workers forked from a test process full of thread pools can crash).
    run_tool([sys.executable, 'tools/analysis_tools/ablate.py', config,
              '--epochs', '1', '--seeds', '0', '--work-dir', str(work),
              '--data-root', str(root)])
    rows = json.loads((work / 'results.json').read_text())['rows']
    assert len(rows) == 1 and 0 <= rows[0]['metrics']['coco/bbox_mAP'] <= 1
    assert (work / 'ablation.md').is_file()
    ckpts = sorted((work / 't6_dataset' / 'seed0').glob('epoch_*.pth'))
    state = torch.load(ckpts[-1], map_location='cpu',
                       weights_only=True)['state_dict']
    boxes = state['rpn_head.init_proposal_bboxes.weight']
    # k-means boxes of the shapes (small objects), not whole images.
    assert float(boxes[:, 2:].max()) < 0.9
    logs = list((work / 't6_dataset' / 'seed0').glob('*/*.log'))
    assert any('DatasetProposalInitHook' in p.read_text() for p in logs)


def test_fingerprint_tells_equal_trainings_apart(tmp_path):
    """Row files that restate defaults train the same model; a switch, a
    hook or a training setting makes another fingerprint."""
    tool = _tool()

    def fp(name):
        return tool.training_fingerprint(osp.join(DEMO, name + '.py'))

    grid = fp('t6_grid')
    assert fp('t3_dynamic_head') == fp('t8_stages_3') == grid
    others = [fp(n) for n in ('t4_plain_cascade', 't10_pos_encoding',
                              't3_static_head', 't8_stages_2', 't6_image',
                              't6_dataset')]
    assert len({grid, *others}) == 7
    lr = tmp_path / 'lr.py'
    lr.write_text(f"_base_ = '{osp.join(DEMO, 't6_grid.py')}'\n"
                  'optim_wrapper = dict(optimizer=dict(lr=1e-5))\n')
    assert tool.training_fingerprint(str(lr)) != grid
    keep = tmp_path / 'keep.py'  # inference only: fewer detections kept
    keep.write_text(f"_base_ = '{osp.join(DEMO, 't6_grid.py')}'\n"
                    'model = dict(test_cfg=dict(rcnn=dict(max_per_img=5)))\n')
    assert tool.training_fingerprint(str(keep)) != grid


def test_rows_that_train_the_same_share_one_run(tmp_path):
    tool = _tool()
    configs = [osp.join(DEMO, n + '.py')
               for n in ('t6_grid', 't3_dynamic_head', 't4_plain_cascade')]
    work = str(tmp_path / 'work')
    train = _FakeTrain()
    rows = tool.run(configs, [0, 1], 2, 'data', work, train=train)
    assert train.calls == [('t6_grid.py', 0), ('t6_grid.py', 1),
                           ('t4_plain_cascade.py', 0),
                           ('t4_plain_cascade.py', 1)]
    shared = [r for r in rows if r['variant'] == 't3_dynamic_head']
    assert [r['same_as'] for r in shared] == ['t6_grid', 't6_grid']
    grid = [r for r in rows if r['variant'] == 't6_grid']
    assert [r['metrics'] for r in shared] == [r['metrics'] for r in grid]
    # Stored fingerprints of an older version of the tool do not matter:
    # the configs' fingerprints are computed again.
    path = osp.join(work, 'results.json')
    stale = [dict(r, fingerprint='stale') for r in tool.load_results(path)]
    with open(path, 'w') as f:
        json.dump(dict(rows=stale), f)
    none = _FakeTrain()
    tool.run([osp.join(DEMO, 't8_stages_3.py')], [0], 2, 'data', work,
             train=none)
    assert none.calls == []
    # Another budget is not shared.
    again = _FakeTrain()
    tool.run(configs[1:2], [0], 3, 'data', work, train=again)
    assert again.calls == [('t3_dynamic_head.py', 0)]
    table = tool.write_table(tool.load_results(osp.join(work,
                                                        'results.json')),
                             str(tmp_path / 'table.md'))
    assert '| t3_dynamic_head (= t6_grid) | T3 + dynamic head | 2 | 0 1 |' \
        in table
