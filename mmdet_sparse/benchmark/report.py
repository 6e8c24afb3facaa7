"""The benchmark's report: the markdown tables, ``benchmark.json``, and the
Pareto front of latency against accuracy."""
import json
import os
import os.path as osp
import tempfile
from typing import List, Optional, Sequence, Tuple

from .published import ap_cell

FLOPS_NOTE = ('GFLOPs: torch.utils.flop_counter.FlopCounterMode, 2 FLOPs per '
              'multiply-add; counts matrix products (mm/addmm/bmm/baddbmm: '
              'incl. the dynamic conv and attention), convolutions and '
              'scaled-dot-product attention; not RoIAlign / deformable '
              'sampling (custom ops), norms or element-wise ops.')
MEM_NOTES = {
    'cuda': 'peak mem: torch.cuda.max_memory_allocated() during the timed '
            'runs (weights included).',
    'cpu': 'peak mem: growth of the process peak RSS during the timed runs '
           '(activations/workspaces; weights excluded).',
}


def _fmt(value: Optional[float], digits: int = 1) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def load_lines(load: Optional[dict]) -> List[str]:
    """Header lines of the load average around the measurements (none for
    a report measured before it was recorded)."""
    if not load:
        return []
    at = ', '.join(f"{_fmt(load.get(when), 2)} at the {when}"
                   for when in ('start', 'end') if when in load)
    return [f"- load average (1 min): {at} of the measurements; "
            f"{load['cores']} usable cores"] + [
                f'- warning: {w}' for w in load.get('warnings', [])]


def _runs_phrase(meta: dict) -> str:
    """How many timed runs each median pools: ``repeats`` per round, over
    ``rounds`` interleaved rounds (one round for reports without it), and
    how many of ``rounds_planned`` are missing from a report written
    between rounds."""
    rounds = int(meta.get('rounds', 1))
    planned = int(meta.get('rounds_planned', rounds))
    if rounds == 1:
        phrase = f"{meta['repeats']} runs"
    else:
        phrase = (f"{meta['repeats'] * rounds} runs ({meta['repeats']} in "
                  f"each of {rounds} interleaved rounds, each in a fresh "
                  'process)')
    if planned > rounds:  # written between rounds; the rest never came
        phrase += (f'; only {rounds} of the {planned} rounds planned are in '
                   'this report')
    return phrase


def format_table(results: Sequence[dict], meta: dict) -> str:
    """Markdown report: header lines, main table, breakdown, notes."""
    lines = ["# Sparse R-CNN benchmark",
             '',
             f"- device: {meta['device']}",
             f"- threads: {meta['threads']}",
             f"- torch: {meta['torch']}",
             f"- input: 1x3x{meta['img_size'][0]}x{meta['img_size'][1]} "
             f"(batch 1), warm-up {meta['warmup']}, median of "
             + _runs_phrase(meta),
             *load_lines(meta.get('load_average')),
             '',
             '| config | backbone | proposals | params (M) | GFLOPs | '
             'backbone+neck ms | heads ms | total ms | FPS | peak mem (MiB) | '
             'COCO AP (published) |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    rows = ['', '| config | params backbone / neck / heads (M) | '
            'GFLOPs backbone+neck / heads |', '|---|---|---|']
    for r in results:
        if 'error' in r:
            error = r['error'].replace('|', '/')[:200]
            lines.append(f"| {r['config']} | error: {error} |"
                         + ' |' * 9)
            continue
        p, lat, f = r['params'], r['latency'], r.get('flops')
        gflops = f and {k: v / 1e9 for k, v in f.items() if k != 'heads_by_op'}
        lines.append(
            f"| {r['config']} | {r['backbone']} | {r['proposals']} | "
            f"{p['total'] / 1e6:.1f} | {_fmt(gflops and gflops['total'])} | "
            f"{lat['backbone_neck'] * 1e3:.1f} | {lat['heads'] * 1e3:.1f} | "
            f"{lat['total'] * 1e3:.1f} | {r['fps']:.2f} | "
            f"{r['peak_mem_mib']:.0f} | {ap_cell(r)} |")
        split = '-' if not gflops else \
            f"{gflops['backbone_neck']:.1f} / {gflops['heads']:.1f}"
        rows.append(f"| {r['config']} | {p['backbone'] / 1e6:.1f} / "
                    f"{p['neck'] / 1e6:.1f} / {p['heads'] / 1e6:.1f} | "
                    f"{split} |")
    notes = ['', f'- {FLOPS_NOTE}',
             f"- {MEM_NOTES['cuda' if 'cuda' in meta['device'] else 'cpu']}",
             '- backbone+neck ms, heads ms, total ms: medians over the runs; '
             'each run times `extract_feat`, then the RPN (learned '
             'proposals) + RoI heads, in one pass of `model.predict`, and '
             'its total is the sum of its two parts.']
    sources = []
    for r in results:
        ap = r.get('published_ap')
        if ap:
            note = f" ({ap['note']})" if ap.get('note') else ''
            sources.append(
                f"- {r['config']}: {ap_cell(r)} — {ap['source']}{note}")
    if sources:
        sources = ['', 'Published COCO val2017 box AP (`*`: published for '
                   'another setting than the config\'s, see the note):',
                   ''] + sources
    return '\n'.join(lines + rows + notes + sources) + '\n'


def pareto_front(points: Sequence[Tuple[float, float]]) -> List[int]:
    """Indices of the points ``(latency, accuracy)`` that no other point
    beats: none is at least as fast and as accurate and better in one of
    the two. Sorted by latency."""
    front = []
    for i, (lat, acc) in enumerate(points):
        dominated = any(
            lat2 <= lat and acc2 >= acc and (lat2 < lat or acc2 > acc)
            for j, (lat2, acc2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def write_report(results: Sequence[dict], meta: dict, out_dir: str) -> str:
    """Write ``benchmark.md``/``.json``/``.png`` to ``out_dir``; returns the
    markdown."""
    from .chart import plot  # the chart uses the Pareto front above
    os.makedirs(out_dir, exist_ok=True)
    table = format_table(results, meta)
    _write_atomic(osp.join(out_dir, 'benchmark.md'), table)
    _write_atomic(osp.join(out_dir, 'benchmark.json'),
                  json.dumps(dict(meta=meta, results=list(results)),
                             indent=2))
    plot(results, osp.join(out_dir, 'benchmark.png'))
    return table


def _write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same
    folder: a report already there is replaced only when the new one is
    complete."""
    fd, tmp = tempfile.mkstemp(suffix='.tmp', dir=osp.dirname(path) or '.')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
