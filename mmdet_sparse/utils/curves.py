"""Training curves from mmengine's ``scalars.json`` log."""
import json
from typing import Dict, List, Tuple


Series = Dict[str, List[float]]


def read_scalars(path: str) -> Tuple[Series, Series]:
    """Split an mmengine ``vis_data/scalars.json`` into train and val series.

    Args:
        path (str): The JSON-lines file written by ``LocalVisBackend``.

    Returns:
        tuple[dict, dict]: ``train`` with ``step`` and ``loss``, ``val`` with
        ``step`` (epoch) and ``coco/bbox_mAP``; missing series stay empty.
    """
    train = {'step': [], 'loss': []}
    val = {'step': [], 'coco/bbox_mAP': []}
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f'{path}:{line_no}: not JSON: {exc}') from exc
            if 'loss' in record:
                train['step'].append(record['step'])
                train['loss'].append(record['loss'])
            if 'coco/bbox_mAP' in record:
                val['step'].append(record['step'])
                val['coco/bbox_mAP'].append(record['coco/bbox_mAP'])
    return train, val


def plot_curves(scalars_path: str, out_file: str) -> str:
    """Plot the loss per iteration and the val mAP per epoch to a PNG.

    Args:
        scalars_path (str): ``scalars.json`` of a run.
        out_file (str): PNG to write.

    Returns:
        str: ``out_file``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    train, val = read_scalars(scalars_path)
    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(train['step'], train['loss'])
    ax_loss.set(xlabel='iteration', ylabel='total loss', title='Training loss')
    ax_loss.set_yscale('log')
    ax_map.plot(val['step'], val['coco/bbox_mAP'], marker='o')
    ax_map.set(xlabel='epoch', ylabel='bbox mAP', title='Val COCO bbox mAP',
               ylim=(0, 1))
    for ax in (ax_loss, ax_map):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file
