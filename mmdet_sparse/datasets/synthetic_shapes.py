"""A bundled, deterministic, COCO-format demo dataset of geometric shapes.

The data needs no download: :func:`ensure_shapes_dataset` draws it once into a
folder laid out like any COCO-format dataset, so it doubles as a template for
training on one's own data::

    out_dir/
        train/000001.png ...
        val/000001.png ...
        annotations/instances_train.json
        annotations/instances_val.json
        meta.json            # generation parameters and format version

Each image holds shapes of the classes :data:`SHAPES_CLASSES`, each class in
its own hue family with random saturation and brightness (or, with
``class_colours=False``, in random colours so the outline is the only cue),
diameters log-uniform from ``min_size`` (16 px) to half the image side
(crowded images: to a tenth of it), random rotation and mild stretch, light
texture, on a textured background (gradients, stripes, smooth noise, stray
lines). Objects may occlude each other and be cut by the image border. With
the defaults about 69 % of the val boxes are small by COCO's area ranges
(area = visible pixels < 32^2), 30 % medium and 1 % large.

Box convention: a box ``[x, y, w, h]`` is the tight extent of the object's
*visible* pixels (after occlusion and clipping), in pixel-edge coordinates,
so ``0 <= x``, ``x + w <= width``. An object with less than ``min_visible`` of
its pixels visible is not drawn at all, so every drawn shape is annotated.
``area`` is the visible pixel count. ``segmentation`` is the exact mask of
the visible pixels as COCO compressed RLE (``{'size': [h, w], 'counts':
str}``), so the data serves instance segmentation too. Same seed and
parameters give byte-identical JSON and identical pixels.
"""
import inspect
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import cv2
import numpy as np

SHAPES_CLASSES = ('circle', 'square', 'triangle', 'star', 'cross')
#: Bump when the drawing or the annotations change, so cached copies are
#: regenerated (3: RLE ``segmentation`` added; boxes and pixels as in 2).
SHAPES_DATA_VERSION = 3
_SPLITS = ('train', 'val')


def _star(points: int, inner: float) -> np.ndarray:
    angles = np.pi * np.arange(2 * points) / points - np.pi / 2
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)


def _cross(half_width: float) -> np.ndarray:
    a = half_width
    return np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a],
                     [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]])


# Outlines in units of the object's radius, centred at the origin.
_POLYGONS = {
    'circle': _star(24, 1.0),
    'square': np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * 0.8,
    'triangle': _star(3, 1.0)[::2] * 1.1 + [0, 0.1],
    'star': _star(5, 0.42) * 1.1,
    'cross': _cross(0.3),
}


def _rand_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def _class_colour(rng: np.random.Generator, label: int) -> np.ndarray:
    """A colour of the class's hue family (+-10 degrees of hue), with
    random saturation and brightness."""
    hue = (label * 180 / len(SHAPES_CLASSES) + rng.uniform(-10, 10)) % 180
    hsv = np.array([[[hue, rng.uniform(120, 255), rng.uniform(110, 255)]]],
                   np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0] \
        .astype(np.float32)


def _noise(rng: np.random.Generator, shape: Tuple[int, ...],
           sigma: float) -> np.ndarray:
    return rng.standard_normal(shape, np.float32) * np.float32(sigma)


def _ramp(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Distance along a random direction, as a float32 ``(h, w)`` array."""
    theta = rng.uniform(0, np.pi)
    xs = np.arange(w, dtype=np.float32) * np.float32(np.cos(theta))
    ys = np.arange(h, dtype=np.float32) * np.float32(np.sin(theta))
    return ys[:, None] + xs[None, :]


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Draw a textured background as a float32 ``(h, w, 3)`` array."""
    proj = _ramp(rng, h, w)
    kind = rng.integers(3)
    if kind == 0:  # linear gradient between two colours
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
        c0, c1 = _rand_colour(rng), _rand_colour(rng)
        img = c0 + t[..., None] * (c1 - c0)
    elif kind == 1:  # hard or soft stripes
        wave = np.sin(2 * np.pi * proj / rng.uniform(6, 40))
        if rng.random() < 0.5:
            wave = np.sign(wave)
        img = _rand_colour(rng) + wave[..., None] * rng.uniform(10, 40, 3)
    else:  # smooth low-frequency noise
        cells = int(rng.integers(3, 12))
        grid = rng.uniform(-1, 1, (cells, cells, 3)).astype(np.float32)
        smooth = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        img = _rand_colour(rng) + smooth * rng.uniform(20, 60)
    img = img.astype(np.float32)
    if rng.random() < 0.3:  # stray lines: clutter that is no object
        for _ in range(int(rng.integers(1, 5))):
            p0 = (int(rng.integers(w)), int(rng.integers(h)))
            p1 = (int(rng.integers(w)), int(rng.integers(h)))
            cv2.line(img, p0, p1, _rand_colour(rng).tolist(),
                     int(rng.integers(1, 3)))
    if rng.random() < 0.4:  # grain (kept rare: it makes PNGs large)
        img += _noise(rng, img.shape, rng.uniform(1, 5))
    return img


def _texture(rng: np.random.Generator, h: int, w: int,
             colour: np.ndarray) -> np.ndarray:
    """Fill of one object's patch: flat, gradient or stripes, plus noise."""
    tex = np.empty((h, w, 3), np.float32)
    tex[:] = colour
    kind = rng.integers(3)
    if kind > 0:
        proj = _ramp(rng, h, w)
        if kind == 1:
            t = proj / max(float(np.ptp(proj)), 1.0) - 0.5
            tex += t[..., None] * rng.uniform(-50, 50, 3).astype(np.float32)
        else:
            wave = np.sign(np.sin(2 * np.pi * proj / rng.uniform(4, 12)))
            tex += wave[..., None] * np.float32(rng.uniform(8, 20))
    return tex + _noise(rng, tex.shape, rng.uniform(1, 6))


def _layout(rng: np.random.Generator, h: int, w: int, num: int,
            diam: Tuple[float, float], spacing: float) -> List[Dict]:
    """Sample up to ``num`` objects and rasterise each into a local mask."""
    objs: List[Dict] = []
    for _ in range(num):
        for _try in range(30):
            r = math.exp(rng.uniform(math.log(diam[0]), math.log(diam[1]))) / 2
            cx = rng.uniform(0.5 * r, w - 0.5 * r)
            cy = rng.uniform(0.5 * r, h - 0.5 * r)
            if all(math.hypot(cx - o['cx'], cy - o['cy']) >= spacing *
                   (r + o['r']) for o in objs):
                break
        else:
            continue
        label = int(rng.integers(len(SHAPES_CLASSES)))
        theta = rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(theta), -np.sin(theta)],
                        [np.sin(theta), np.cos(theta)]])
        stretch = np.diag([1.0, math.exp(rng.uniform(-0.22, 0.22))])
        pts = _POLYGONS[SHAPES_CLASSES[label]] @ (rot @ stretch).T * r
        pts = pts + [cx, cy]
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
        local = np.zeros((y1 - y0, x1 - x0), np.uint8)
        fixed = np.round((pts - [x0, y0]) * 16).astype(np.int32)
        cv2.fillPoly(local, [fixed], 1, cv2.LINE_8, shift=4)
        objs.append(dict(cx=cx, cy=cy, r=r, label=label, x0=int(x0),
                         y0=int(y0), local=local, full=int(local.sum())))
    return objs


def _clip(obj: Dict, h: int, w: int) -> Tuple[slice, slice, np.ndarray]:
    """Image slices of an object's patch and its mask cropped to the image."""
    x0, y0, local = obj['x0'], obj['y0'], obj['local']
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1 = min(x0 + local.shape[1], w)
    iy1 = min(y0 + local.shape[0], h)
    crop = local[iy0 - y0:max(iy1, iy0) - y0, ix0 - x0:max(ix1, ix0) - x0]
    return slice(iy0, max(iy1, iy0)), slice(ix0, max(ix1, ix0)), crop > 0


def _visible(objs: List[Dict], h: int, w: int) -> List[Optional[Dict]]:
    """Visible pixel count and tight box of each object, top-most last."""
    owner = np.zeros((h, w), np.int32)
    for k, obj in enumerate(objs):
        ys, xs, m = _clip(obj, h, w)
        owner[ys, xs][m] = k + 1
    out: List[Optional[Dict]] = []
    for k, obj in enumerate(objs):
        ys, xs, _ = _clip(obj, h, w)
        vis = owner[ys, xs] == k + 1
        count = int(vis.sum())
        if count == 0:
            out.append(None)
            continue
        rows, cols = np.flatnonzero(vis.any(1)), np.flatnonzero(vis.any(0))
        x, y = xs.start + int(cols[0]), ys.start + int(rows[0])
        out.append(dict(count=count, bbox=[x, y, int(cols[-1] - cols[0]) + 1,
                                           int(rows[-1] - rows[0]) + 1]))
    return out


def _visible_masks(objs: List[Dict], h: int, w: int) -> List[np.ndarray]:
    """Full-image ``(h, w)`` bool mask of each object's visible pixels
    (later objects cover earlier ones, as drawn)."""
    owner = np.zeros((h, w), np.int32)
    for k, obj in enumerate(objs):
        ys, xs, m = _clip(obj, h, w)
        owner[ys, xs][m] = k + 1
    return [owner == k + 1 for k in range(len(objs))]


def mask_to_rle(mask: np.ndarray) -> Dict[str, Any]:
    """COCO compressed RLE of a ``(h, w)`` bool mask, JSON-ready
    (``counts`` as str)."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return dict(size=[int(s) for s in rle['size']],
                counts=rle['counts'].decode('ascii'))


def _render_image(rng: np.random.Generator, h: int, w: int,
                  empty_prob: float, crowded_prob: float, max_objects: int,
                  min_visible: float, min_size: float,
                  class_colours: bool) -> Tuple[np.ndarray, List[Dict]]:
    """Draw one image; return it (uint8) and per object label, count, bbox."""
    img = _background(rng, h, w)
    side = min(h, w)
    u = rng.random()
    if u < empty_prob:
        objs: List[Dict] = []
    elif u < empty_prob + crowded_prob:
        objs = _layout(rng, h, w, int(rng.integers(24, 33)),
                       (min_size, max(min_size + 2, side * 0.1)), 0.8)
    else:
        objs = _layout(rng, h, w, int(rng.integers(1, max_objects + 1)),
                       (min_size, max(min_size + 2, side / 2)),
                       rng.uniform(0.45, 0.8))
    # Drop mostly hidden objects; uncovering only raises the others' share.
    vis = _visible(objs, h, w)
    objs = [o for o, v in zip(objs, vis)
            if v and v['count'] >= min_visible * o['full']]
    vis = _visible(objs, h, w)
    for obj in objs:
        ys, xs, m = _clip(obj, h, w)
        patch = img[ys, xs]
        under = patch[m].mean(0)
        pick = (lambda: _class_colour(rng, obj['label'])) \
            if class_colours else (lambda: _rand_colour(rng))
        cands = [pick() for _ in range(4)]
        colour = max(cands, key=lambda c: float(np.abs(c - under).sum()))
        tex = _texture(rng, m.shape[0], m.shape[1], colour)
        if rng.random() < 0.3:  # darker or lighter rim inside the mask
            inner = cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8))
            rim = m & (inner == 0)
            tex[rim] = tex[rim] * 0.5 + (128 if rng.random() < 0.5 else 0)
        patch[m] = tex[m]
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    segs = [mask_to_rle(m) for m in _visible_masks(objs, h, w)]
    return img, [dict(label=o['label'], segmentation=seg, **v)
                 for o, v, seg in zip(objs, vis, segs)]


def generate_shapes_dataset(out_dir: Union[str, Path],
                            num_train: int = 600,
                            num_val: int = 100,
                            img_size: Tuple[int, int] = (256, 256),
                            seed: int = 0,
                            empty_prob: float = 0.05,
                            crowded_prob: float = 0.05,
                            max_objects: int = 6,
                            min_visible: float = 0.6,
                            min_size: float = 16,
                            class_colours: bool = True) -> Dict[str, Any]:
    """Draw the dataset into ``out_dir`` (created; existing files overwritten).

    Image ``i`` of a split depends only on ``(seed, split, i)``, so changing
    the counts keeps the images they share.

    Args:
        out_dir (str | Path): Output folder.
        num_train (int): Number of training images. Defaults to 600.
        num_val (int): Number of validation images. Defaults to 100.
        img_size (tuple[int, int]): Image ``(height, width)``.
            Defaults to (256, 256).
        seed (int): Random seed (non-negative). Defaults to 0.
        empty_prob (float): Chance of an image without objects.
            Defaults to 0.05.
        crowded_prob (float): Chance of a crowded image (24-32 small objects
            placed, of which usually all but a few remain).
            Defaults to 0.05.
        max_objects (int): Other images get 1 to this many objects placed
            (fewer remain when they do not fit). Defaults to 6.
        min_visible (float): Objects with a smaller visible share of their
            pixels are left out of the image. Defaults to 0.6.
        min_size (float): Smallest object diameter in pixels; diameters are
            log-uniform from this to a tenth of the image side in crowded
            images, to half of it in the others. Defaults to 16.
        class_colours (bool): Draw each class in its own hue family (hue
            +-10 degrees, random saturation and brightness) so that a small
            model learns it from scratch in minutes; False draws every
            object in a random colour, leaving the outline as the only cue.
            Defaults to True.

    Returns:
        dict: ``out_dir``, ``meta_file`` and per split (``'train'``,
        ``'val'``) a dict with ``img_dir``, ``ann_file``, ``num_images``,
        ``num_annotations``.
    """
    out = Path(out_dir)
    params = dict(num_train=int(num_train), num_val=int(num_val),
                  img_size=[int(s) for s in img_size], seed=int(seed),
                  empty_prob=float(empty_prob),
                  crowded_prob=float(crowded_prob),
                  max_objects=int(max_objects),
                  min_visible=float(min_visible),
                  min_size=float(min_size),
                  class_colours=bool(class_colours))
    h, w = params['img_size']
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(SHAPES_CLASSES)]
    (out / 'annotations').mkdir(parents=True, exist_ok=True)
    result: Dict[str, Any] = dict(out_dir=str(out))
    for split_id, (split, count) in enumerate(
            zip(_SPLITS, (params['num_train'], params['num_val']))):
        (out / split).mkdir(exist_ok=True)
        images, anns = [], []
        for i in range(count):
            rng = np.random.default_rng([params['seed'], split_id, i])
            img, objs = _render_image(rng, h, w, params['empty_prob'],
                                      params['crowded_prob'],
                                      params['max_objects'],
                                      params['min_visible'],
                                      params['min_size'],
                                      params['class_colours'])
            name = f'{i + 1:06d}.png'
            if not cv2.imwrite(str(out / split / name), img):
                raise OSError(f'could not write {out / split / name}')
            images.append(dict(id=i + 1, file_name=name, width=w, height=h))
            for obj in objs:
                anns.append(dict(id=len(anns) + 1, image_id=i + 1,
                                 category_id=obj['label'] + 1,
                                 bbox=obj['bbox'], area=obj['count'],
                                 segmentation=obj['segmentation'],
                                 iscrowd=0))
        coco = dict(info=dict(description=f'synthetic shapes ({split})',
                              version=str(SHAPES_DATA_VERSION)),
                    licenses=[], images=images, annotations=anns,
                    categories=categories)
        ann_file = out / 'annotations' / f'instances_{split}.json'
        ann_file.write_text(json.dumps(coco, separators=(',', ':')))
        result[split] = dict(img_dir=str(out / split),
                             ann_file=str(ann_file), num_images=len(images),
                             num_annotations=len(anns))
    meta = dict(version=SHAPES_DATA_VERSION, params=params,
                counts={s: {k: result[s][k] for k in
                            ('num_images', 'num_annotations')}
                        for s in _SPLITS})
    (out / 'meta.json').write_text(json.dumps(meta, indent=2) + '\n')
    result['meta_file'] = str(out / 'meta.json')
    return result


def _summary(out: Path, meta: Dict) -> Dict[str, Any]:
    result: Dict[str, Any] = dict(out_dir=str(out),
                                  meta_file=str(out / 'meta.json'))
    for split in _SPLITS:
        result[split] = dict(
            img_dir=str(out / split),
            ann_file=str(out / 'annotations' / f'instances_{split}.json'),
            **meta['counts'][split])
    return result


def ensure_shapes_dataset(out_dir: Union[str, Path] = 'data/shapes',
                          force: bool = False,
                          **kwargs: Any) -> Dict[str, Any]:
    """Generate the dataset unless ``out_dir`` already holds the same one.

    ``out_dir/meta.json`` records the format version and the parameters; the
    data is regenerated only when it is missing or differs (or ``force``).
    Generation goes to a temporary folder beside ``out_dir`` that is renamed
    into place when complete, so an interrupted run never leaves a partial
    dataset behind under ``out_dir``.

    Args:
        out_dir (str | Path): Dataset folder. Defaults to ``'data/shapes'``.
        force (bool): Regenerate even if up to date. Defaults to False.
        **kwargs: Parameters of :func:`generate_shapes_dataset`.

    Returns:
        dict: As :func:`generate_shapes_dataset`, plus ``regenerated``.
    """
    out = Path(out_dir)
    params = {k: p.default for k, p in inspect.signature(
        generate_shapes_dataset).parameters.items() if k != 'out_dir'}
    unknown = set(kwargs) - set(params)
    if unknown:
        raise TypeError(f'unknown parameters: {sorted(unknown)}')
    params.update(kwargs)
    wanted = json.loads(json.dumps(dict(
        version=SHAPES_DATA_VERSION,
        params=dict(params, img_size=list(params['img_size'])))))
    meta_file = out / 'meta.json'
    if meta_file.is_file() and not force:
        try:
            meta = json.loads(meta_file.read_text())
            if (meta.get('version') == wanted['version']
                    and meta.get('params') == wanted['params']):
                return dict(_summary(out, meta), regenerated=False)
        except (ValueError, KeyError):
            pass
    if out.exists() and not meta_file.is_file() and any(
            p.name not in (*_SPLITS, 'annotations') for p in out.iterdir()):
        raise FileExistsError(
            f'{out} exists and does not look like a shapes dataset; '
            'remove it or choose another folder')
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]  # mkdir (unlike mkdtemp) keeps the umask
    tmp = out.parent / f'.{out.name}.tmp-{tag}'
    old = out.parent / f'.{out.name}.old-{tag}'
    try:
        generate_shapes_dataset(tmp, **params)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    meta = json.loads(meta_file.read_text())
    return dict(_summary(out, meta), regenerated=True)
