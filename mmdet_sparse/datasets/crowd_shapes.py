"""A tiny CrowdHuman-format (``.odgt``) set of crowded synthetic shapes.

Made for trying the CrowdHuman pipeline (``CrowdHumanDataset``,
``CrowdHumanMetric``) without the real data. Every image is a crowd of
heavily overlapping shapes drawn like :mod:`.synthetic_shapes` (same
backgrounds and textures, random colours); every shape is one object of the
single class ``person``. The folder is laid out like CrowdHuman::

    out_dir/
        Images/train_00001.jpg ... val_00001.jpg ...
        annotation_train.odgt     # one JSON record per line
        annotation_val.odgt
        id_hw_train.json          # {ID: [height, width]}, read by
        id_hw_val.json            # CrowdHumanDataset instead of the images
        meta.json                 # generation parameters

A record is ``{"ID": ..., "gtboxes": [{"tag": "person", "fbox": [x, y, w,
h], "vbox": [...], "hbox": [...], "extra": {"box_id": k, "occ": 0|1}}]}``
with, as in CrowdHuman: ``fbox`` the full extent of the shape, occluded parts
included (it may reach past the image border); ``vbox`` the extent of its
visible pixels; ``hbox`` a "head" box, the top quarter of the ``fbox``
(middle half of its width). Shapes with less than ``min_visible`` of their
pixels visible are drawn but tagged ``mask`` with ``extra.ignore = 1`` (an
ignored region, as CrowdHuman marks what it does not annotate). Same seed
and parameters give identical files.
"""
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import cv2
import numpy as np

from .synthetic_shapes import (_background, _clip, _layout, _rand_colour,
                               _texture, _visible)

CROWD_ODGT_VERSION = 1
_SPLITS = ('train', 'val')


def _full_box(obj: Dict) -> List[int]:
    """``[x, y, w, h]`` of a shape's whole mask (not clipped to the image)."""
    local = obj['local']
    rows = np.flatnonzero(local.any(1))
    cols = np.flatnonzero(local.any(0))
    return [obj['x0'] + int(cols[0]), obj['y0'] + int(rows[0]),
            int(cols[-1] - cols[0]) + 1, int(rows[-1] - rows[0]) + 1]


def _render_crowd(rng: np.random.Generator, h: int, w: int,
                  num_objects: Tuple[int, int], diameter: Tuple[float, float],
                  spacing: float) -> Tuple[np.ndarray, List[Dict]]:
    """Draw one crowded image; return it (uint8) and per shape its full box,
    visible box and visible share of its pixels (bottom-most first)."""
    img = _background(rng, h, w)
    objs = _layout(rng, h, w, int(rng.integers(num_objects[0],
                                               num_objects[1] + 1)),
                   diameter, spacing)
    vis = _visible(objs, h, w)
    out = []
    for obj, v in zip(objs, vis):
        ys, xs, m = _clip(obj, h, w)
        if m.any():
            under = img[ys, xs][m].mean(0)
            colour = max((_rand_colour(rng) for _ in range(4)),
                         key=lambda c: float(np.abs(c - under).sum()))
            tex = _texture(rng, m.shape[0], m.shape[1], colour)
            img[ys, xs][m] = tex[m]
        if v is not None:
            out.append(dict(fbox=_full_box(obj), vbox=v['bbox'],
                            visible=v['count'] / obj['full']))
    return np.clip(np.round(img), 0, 255).astype(np.uint8), out


def _record(image_id: str, objs: List[Dict], min_visible: float) -> Dict:
    """The ``.odgt`` record of one image."""
    boxes = []
    for k, obj in enumerate(objs):
        x, y, fw, fh = obj['fbox']
        head = [x + fw // 4, y, max(fw // 2, 1), max(fh // 4, 1)]
        extra = dict(box_id=k, occ=int(obj['visible'] < 1.0))
        if obj['visible'] < min_visible:
            extra['ignore'] = 1
        boxes.append(dict(
            tag='mask' if 'ignore' in extra else 'person',
            fbox=obj['fbox'], vbox=obj['vbox'], hbox=head, extra=extra))
    return dict(ID=image_id, gtboxes=boxes)


def generate_crowd_shapes_odgt(out_dir: Union[str, Path],
                               num_train: int = 60,
                               num_val: int = 20,
                               img_size: Tuple[int, int] = (256, 256),
                               seed: int = 0,
                               num_objects: Tuple[int, int] = (8, 20),
                               diameter: Tuple[float, float] = (24, 72),
                               spacing: float = 0.45,
                               min_visible: float = 0.3) -> Dict[str, Any]:
    """Draw the crowded-shapes set in CrowdHuman format into ``out_dir``.

    The files are written into a temporary folder beside ``out_dir`` that
    then replaces it, so an interrupted run leaves ``out_dir`` as it was.
    Image ``i`` of a split depends only on ``(seed, split, i)``.

    Args:
        out_dir (str | Path): Output folder (replaced if it exists and holds
            a set made by this function; any other existing folder is an
            error).
        num_train (int): Training images. Defaults to 60.
        num_val (int): Validation images. Defaults to 20.
        img_size (tuple[int, int]): ``(height, width)``. Defaults to
            (256, 256).
        seed (int): Random seed (non-negative). Defaults to 0.
        num_objects (tuple[int, int]): Shapes placed per image, uniform in
            this closed range (fewer remain when they do not fit).
            Defaults to (8, 20).
        diameter (tuple[float, float]): Range of shape diameters in pixels
            (log-uniform). Defaults to (24, 72).
        spacing (float): Centres are at least ``spacing * (r1 + r2)`` apart;
            below 1 the shapes overlap. Defaults to 0.45.
        min_visible (float): Shapes with a smaller visible share of their
            pixels are tagged ``mask`` (ignored). Defaults to 0.3.

    Returns:
        dict: ``out_dir``, ``img_dir`` and per split (``'train'``,
        ``'val'``) the ``ann_file``, ``num_images``, ``num_persons`` and
        ``num_ignored`` (boxes tagged ``mask``).
    """
    out = Path(out_dir)
    if out.exists() and not (out / 'meta.json').is_file():
        raise FileExistsError(
            f'{out} exists and was not made by generate_crowd_shapes_odgt '
            '(no meta.json); remove it or choose another folder')
    params = dict(num_train=int(num_train), num_val=int(num_val),
                  img_size=[int(s) for s in img_size], seed=int(seed),
                  num_objects=[int(n) for n in num_objects],
                  diameter=[float(d) for d in diameter],
                  spacing=float(spacing), min_visible=float(min_visible))
    if not 1 <= params['num_objects'][0] <= params['num_objects'][1]:
        raise ValueError(f'num_objects={num_objects}: need 1 <= min <= max')
    h, w = params['img_size']
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = out.parent / f'.{out.name}.tmp-{tag}'
    old = out.parent / f'.{out.name}.old-{tag}'
    result: Dict[str, Any] = dict(out_dir=str(out),
                                  img_dir=str(out / 'Images'))
    try:
        (tmp / 'Images').mkdir(parents=True)
        for split_id, split in enumerate(_SPLITS):
            lines, id_hw = [], {}
            persons = ignored = 0
            for i in range(params[f'num_{split}']):
                rng = np.random.default_rng([params['seed'], 100 + split_id,
                                             i])
                img, objs = _render_crowd(rng, h, w,
                                          tuple(params['num_objects']),
                                          tuple(params['diameter']),
                                          params['spacing'])
                image_id = f'{split}_{i + 1:05d}'
                path = tmp / 'Images' / f'{image_id}.jpg'
                if not cv2.imwrite(str(path), img,
                                   [cv2.IMWRITE_JPEG_QUALITY, 95]):
                    raise OSError(f'could not write {path}')
                record = _record(image_id, objs, params['min_visible'])
                lines.append(json.dumps(record, separators=(',', ':')))
                id_hw[image_id] = [h, w]
                tags = [b['tag'] for b in record['gtboxes']]
                persons += tags.count('person')
                ignored += tags.count('mask')
            ann_file = tmp / f'annotation_{split}.odgt'
            ann_file.write_text('\n'.join(lines) + '\n')
            (tmp / f'id_hw_{split}.json').write_text(json.dumps(id_hw))
            result[split] = dict(
                ann_file=str(out / ann_file.name),
                num_images=len(lines), num_persons=persons,
                num_ignored=ignored)
        meta = dict(version=CROWD_ODGT_VERSION, params=params,
                    counts={s: {k: result[s][k] for k in (
                        'num_images', 'num_persons', 'num_ignored')}
                        for s in _SPLITS})
        (tmp / 'meta.json').write_text(json.dumps(meta, indent=2) + '\n')
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return result
