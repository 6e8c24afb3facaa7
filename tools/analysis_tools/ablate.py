"""Train ablation variants on the bundled shapes data and tabulate them next
to the paper's Section 4.2 numbers.

    python tools/analysis_tools/ablate.py configs/ablations/demo/t6_*.py \\
        --epochs 12 --seeds 0 1 [--work-dir work_dirs/ablate]

Every (variant, seed) is trained for ``--epochs`` epochs (as
``tools/demo.py`` trains) and its final weights evaluated on the val set.
Each finished row is appended to ``WORK_DIR/results.json`` at once (written
to a temporary file, then renamed; with when and where it was trained, see
:func:`provenance`), so nothing measured is lost; a rerun
skips the rows already there (same config, seed and epochs). Rows of
different files that train the same thing (the same model behaviour and
the same training settings, see :func:`training_fingerprint`; e.g. Table
3's dynamic head, Table 8's 3 stages and Table 6's grid start on the demo)
are trained once per seed and share the result (``same_as`` names the row
that trained). At the end
``WORK_DIR/ablation.md`` holds the table (box AP mean and spread over seeds
next to the paper's R50-FPN 3x COCO AP) and ``WORK_DIR/ablation.png`` the
chart. ``--report-only`` only rewrites the table and chart.
"""
import argparse
import hashlib
import json
import logging
import os
import os.path as osp
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

#: The paper's Tables 3-10 (R50-FPN, 100 proposals, 3x, COCO val): row
#: name (the config's file name) -> (caption, AP, AP50, AP75); None where
#: the paper gives no number.
PAPER = {
    't3_static_head': ('T3 learnable boxes + static head', 18.5, 35.0,
                       17.7),
    't3_iterative': ('T3 + iterative architecture', 32.2, 47.5, 34.4),
    't3_dynamic_head': ('T3 + dynamic head', 42.3, 61.2, 45.7),
    't4_none': ('T4 no iteration (static head)', 18.5, None, None),
    't4_plain_cascade': ('T4 plain cascade', 20.5, 29.3, 20.7),
    't4_feature_reuse': ('T4 cascade + feature reuse', 32.2, 47.5, 34.4),
    't5_none': ('T5 static head, cascade', 32.2, None, None),
    't5_self_attention': ('T5 + self-attention', 37.2, 54.8, 40.1),
    't5_instance_interaction': ('T5 + instance interaction', 42.3, 61.2,
                                45.7),
    't6_center': ('T6 Center', 41.5, 59.6, 45.0),
    't6_image': ('T6 Image', 42.3, 61.2, 45.7),
    't6_grid': ('T6 Grid', 41.0, 59.4, 44.2),
    't6_random': ('T6 Random', 42.1, 60.3, 45.3),
    't6_dataset': ('T6 Dataset k-means (not in the paper)', None, None,
                   None),
    't7_proposals_100': ('T7 100 proposals', 42.3, None, None),
    't7_proposals_300': ('T7 300 proposals', 43.9, None, None),
    't7_proposals_500': ('T7 500 proposals', 44.6, None, None),
    't8_stages_1': ('T8 1 stage', 21.7, None, None),
    't8_stages_2': ('T8 2 stages', 36.2, None, None),
    't8_stages_3': ('T8 3 stages', 39.9, None, None),
    't8_stages_6': ('T8 6 stages', 42.3, None, None),
    't8_stages_12': ('T8 12 stages', 41.6, None, None),
    't9_multi_head_attention': ('T9 multi-head attention', 35.7, 54.9,
                                37.7),
    't9_dynamic_head': ('T9 dynamic head', 42.3, 61.2, 45.7),
    't10_pos_encoding': ('T10 with positional encoding', 41.9, None, None),
    't10_no_pos_encoding': ('T10 without positional encoding', 42.3, None,
                            None),
}
METRICS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='*', help='variant configs')
    parser.add_argument('--epochs', type=int, default=12)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs',
                                                       'ablate'))
    parser.add_argument('--data-root', default=osp.join(REPO, 'data',
                                                        'shapes'),
                        help='generated there when it holds no dataset')
    parser.add_argument('--report-only', action='store_true',
                        help='only rewrite the table and chart')
    return parser.parse_args(argv)


def variant_name(config: str) -> str:
    """``configs/ablations/demo/t6_grid.py`` -> ``t6_grid``."""
    return osp.splitext(osp.basename(config))[0]


def row_key(row: Dict) -> tuple:
    """What identifies a row: config file, seed and epochs."""
    config = osp.normpath(osp.join(REPO, row['config']))
    return (config, int(row['seed']), int(row['epochs']))


def training_fingerprint(config: str) -> str:
    """What a row trains, as a short hash: two configs with the same
    fingerprint train the same model in the same way.

    The training settings are everything in the config but ``model`` (and
    the switch files' ``ablation_model``), compared as written. The model
    is compared by behaviour, because a switch that restates a default
    (``feature_reuse=True``) changes the dict but not the model: it is
    built with seed 0 and its parameters (names, shapes, sums), its
    losses on a fixed 2-image batch and its predictions on that batch
    (so that inference settings count) are hashed.
    """
    import torch
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(config)
    settings = cfg.to_dict()
    settings.pop('model')
    settings.pop('ablation_model', None)
    digest = hashlib.sha256(
        json.dumps(settings, sort_keys=True, default=repr).encode())
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # not the per-parameter init report
    fork = torch.random.fork_rng()
    try:
        with fork, DefaultScope.overwrite_default_scope('mmdet_sparse'):
            model, losses, preds = _probe(cfg.model)
    finally:
        logger.setLevel(level)
    for name, tensor in model.state_dict().items():
        digest.update(f'{name}{tuple(tensor.shape)}'
                      f'{float(tensor.double().sum()):.6g}'.encode())
    for name in sorted(losses):
        value = losses[name]
        value = sum(value) if isinstance(value, (list, tuple)) else value
        digest.update(f'{name}={float(value.detach()):.6g}'.encode())
    for pred in preds:  # what inference keeps (test_cfg) counts too
        for key in ('bboxes', 'scores', 'labels'):
            value = getattr(pred.pred_instances, key).double()
            digest.update(f'{key}{tuple(value.shape)}'
                          f'{float(value.sum()):.6g}'.encode())
    return digest.hexdigest()[:16]


def _probe(model_cfg) -> tuple:
    """The model of ``model_cfg`` built and initialised with seed 0, its
    training losses on a fixed batch of two 64x64 images with two boxes
    each, and its predictions on those images in eval mode."""
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    from mmdet_sparse.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.train()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(2, 3, 64, 64, generator=generator)
    samples = []
    for i in range(2):
        sample = DetDataSample(metainfo=dict(
            img_shape=(64, 64), pad_shape=(64, 64), ori_shape=(64, 64),
            scale_factor=(1.0, 1.0), batch_input_shape=(64, 64)))
        xy = torch.tensor([[4.0, 6.0], [20.0, 30.0]]) + i
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + torch.tensor([24.0, 18.0])], 1),
            labels=torch.tensor([0, 1 + i]))
        samples.append(sample)
    losses = model.loss(inputs, samples)
    model.eval()
    with torch.no_grad():
        preds = model.predict(inputs, samples)
    return model, losses, preds


def load_results(path: str) -> List[Dict]:
    if not osp.isfile(path):
        return []
    with open(path) as f:
        return json.load(f)['rows']


def append_result(path: str, row: Dict) -> None:
    """Add ``row`` to the results file, atomically (temp file + rename)."""
    rows = load_results(path) + [row]
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.json.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(dict(rows=rows), f, indent=1)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def provenance() -> Dict[str, object]:
    """Where and when a row was trained: UTC time, the CPU (model name,
    usable cores, torch's threads), torch's version and the repository's
    commit (None outside a git checkout)."""
    import platform
    import subprocess

    import torch
    cpu = platform.processor() or platform.machine()
    if osp.isfile('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f
                     if line.startswith('model name')]
        cpu = names[0] if names else cpu
    cores = len(os.sched_getaffinity(0)) if hasattr(
        os, 'sched_getaffinity') else os.cpu_count()
    try:
        commit = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO,
            capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None  # not a git checkout (an installed copy)
    return dict(finished=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                machine=f'{cpu}, {cores} cores, {torch.get_num_threads()} '
                f'torch threads', torch=torch.__version__, commit=commit)


def train_variant(config: str, seed: int, epochs: int, data_root: str,
                  work_dir: str) -> Dict[str, float]:
    """Train ``config`` on the shapes data as ``tools/demo.py`` does and
    return the val metrics of its final weights."""
    from mmengine.config import Config

    from mmdet_sparse.apis import train_then_test
    sys.path.insert(0, osp.join(REPO, 'tools'))
    from demo import scale_epochs
    cfg = Config.fromfile(config)
    if not cfg.train_dataloader.dataset.get('metainfo'):
        raise ValueError(f'{config} is not a shapes-demo config (its '
                         'dataset names no classes): ablate.py trains the '
                         'configs of configs/ablations/demo')
    root = data_root.rstrip('/') + '/'
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = root
    for split in ('val_evaluator', 'test_evaluator'):
        cfg[split].ann_file = root + 'annotations/instances_val.json'
    scale_epochs(cfg, epochs)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed, deterministic=False)
    metrics = train_then_test(cfg)[0]
    return {k: float(metrics[k]) for k in METRICS if k in metrics}


def run(configs: Sequence[str], seeds: Sequence[int], epochs: int,
        data_root: str, work_dir: str,
        train: Callable[..., Dict[str, float]] = train_variant) -> List:
    """Train every (config, seed) not yet in ``work_dir/results.json``."""
    results = osp.join(work_dir, 'results.json')
    done = {row_key(row) for row in load_results(results)}
    fingerprints: Dict[str, str] = {}

    def fingerprint_of(path: str) -> Optional[str]:
        """The config's fingerprint by this code (cached), None for a
        config file that is gone (then a row's stored one is used)."""
        path = osp.normpath(osp.join(REPO, path))
        if path not in fingerprints and osp.isfile(path):
            fingerprints[path] = training_fingerprint(path)
        return fingerprints.get(path)

    for config in configs:
        for seed in seeds:
            row = dict(variant=variant_name(config),
                       config=osp.relpath(osp.abspath(config), REPO),
                       seed=seed, epochs=epochs)
            if row_key(row) in done:
                print(f'[ablate] skip {row["variant"]} seed {seed}: done')
                continue
            row['fingerprint'] = fingerprint_of(row['config'])
            twin = next(
                (r for r in load_results(results)
                 if 'same_as' not in r and r['seed'] == seed
                 and r['epochs'] == epochs
                 and (fingerprint_of(r['config']) or r.get('fingerprint'))
                 == row['fingerprint']), None)
            if twin is not None:
                row.update(metrics=dict(twin['metrics']), minutes=0.0,
                           same_as=twin['variant'])
                append_result(results, row)
                print(f"[ablate] {row['variant']} seed {seed}: trains the "
                      f"same as {twin['variant']}, result shared",
                      flush=True)
                continue
            start = time.time()
            out = osp.join(work_dir, row['variant'], f'seed{seed}')
            row['metrics'] = train(config, seed, epochs, data_root, out)
            row['minutes'] = round((time.time() - start) / 60, 2)
            row.update(provenance())
            append_result(results, row)
            print(f"[ablate] {row['variant']} seed {seed}: "
                  f"{row['metrics']} ({row['minutes']} min)", flush=True)
    return load_results(results)


def summarize(rows: List[Dict]) -> List[Dict]:
    """Per (variant, config, epochs): AP mean, std and range over seeds,
    in percent, in the order first seen."""
    groups: Dict[tuple, List[Dict]] = {}
    for row in rows:
        groups.setdefault((row['variant'], row['config'], row['epochs']),
                          []).append(row)
    table = []
    for (variant, config, epochs), group in groups.items():
        entry = dict(variant=variant, config=config, epochs=epochs,
                     seeds=sorted(r['seed'] for r in group),
                     same_as=sorted({r['same_as'] for r in group
                                     if 'same_as' in r}))
        for metric in METRICS:
            values = [100 * r['metrics'][metric] for r in group
                      if metric in r['metrics']]
            key = metric.split('/')[-1].replace('bbox_', '')
            entry[key] = values
        table.append(entry)
    return table


def _fmt(values: List[float]) -> str:
    if not values:
        return '-'
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f'{mean:.1f}'
    return f'{mean:.1f} ± {statistics.stdev(values):.1f}'


def _table_of(variant: str) -> str:
    """``t6_grid`` -> ``Table 6``; other names -> ``Other rows``."""
    head = variant.split('_')[0]
    return f'Table {head[1:]}' if head[1:].isdigit() else 'Other rows'


def _paper_order(title: str) -> tuple:
    """Sort key of :func:`_table_of`'s titles: Table 3, ..., Table 10,
    then the other rows."""
    number = title.split()[-1]
    return (0, int(number)) if number.isdigit() else (1, 0)


def write_table(rows: List[Dict], path: str) -> str:
    """Markdown tables of ``rows`` next to the paper's numbers, one per
    paper table (grouped by the ``tN_`` prefix of the variant names, in
    the paper's order; rows in the order first seen)."""
    header = [
        '| variant | paper row | epochs | seeds | AP per seed | AP | AP50 | '
        'AP75 | paper AP | paper AP50 | paper AP75 |', '|' + '---|' * 11
    ]
    tables: Dict[str, List[str]] = {}
    for e in summarize(rows):
        caption, *paper = PAPER.get(e['variant'], ('-', None, None, None))
        paper = ['-' if v is None else f'{v:.1f}' for v in paper]
        name = e['variant'] + (f" (= {', '.join(e['same_as'])})"
                               if e['same_as'] else '')
        per_seed = ' / '.join(f'{v:.1f}' for v in e['mAP']) or '-'
        tables.setdefault(_table_of(e['variant']), list(header)).append(
            f"| {name} | {caption} | {e['epochs']} | "
            f"{' '.join(map(str, e['seeds']))} | {per_seed} | "
            f"{_fmt(e['mAP'])} | {_fmt(e['mAP_50'])} | {_fmt(e['mAP_75'])} | "
            + ' | '.join(paper) + ' |')
    text = ('Box AP (x100) on the shapes val set: mean ± std over seeds; '
            "the paper's numbers are R50-FPN 3x on COCO val; (= row): "
            'the same training as that row, result shared.\n')
    for title in sorted(tables, key=_paper_order):
        text += f'\n### {title}\n\n' + '\n'.join(tables[title]) + '\n'
    with open(path, 'w') as f:
        f.write(text)
    return text


def plot(rows: List[Dict], path: str) -> None:
    """mAP of each variant, in the paper's table order: every seed as a
    dot, the mean as a bar, the paper's AP as a cross."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    table = sorted(summarize(rows),
                   key=lambda e: _paper_order(_table_of(e['variant'])))
    fig, ax = plt.subplots(figsize=(max(5.5, 0.6 * len(table) + 2), 4))
    for i, e in enumerate(table):
        if e['mAP']:
            ax.bar(i, statistics.fmean(e['mAP']), color='#9ecae1')
            ax.plot([i] * len(e['mAP']), e['mAP'], 'o', color='#08519c')
            ax.vlines(i, min(e['mAP']), max(e['mAP']), color='#08519c')
        paper = PAPER.get(e['variant'], (None, None))[1]
        if paper is not None:
            ax.plot(i, paper, 'x', color='#d62728', markersize=8)
    ax.set_xticks(range(len(table)))
    ax.set_xticklabels([e['variant'] for e in table], rotation=60,
                       ha='right', fontsize=8)
    ax.set_ylabel('box AP (x100)')
    ax.set_title('ablations: bars mean over seeds, dots seeds, '
                 'x paper (COCO)', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    work_dir = osp.abspath(args.work_dir)
    if args.report_only:
        rows = load_results(osp.join(work_dir, 'results.json'))
    else:
        if not osp.isfile(osp.join(args.data_root, 'annotations',
                                   'instances_train.json')):
            from mmdet_sparse.datasets import ensure_shapes_dataset
            ensure_shapes_dataset(args.data_root)
        rows = run(args.configs, args.seeds, args.epochs, args.data_root,
                   work_dir)
    os.makedirs(work_dir, exist_ok=True)
    print(write_table(rows, osp.join(work_dir, 'ablation.md')))
    plot(rows, osp.join(work_dir, 'ablation.png'))
    print(f'[ablate] table and chart in {work_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
