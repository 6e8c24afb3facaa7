"""Inference on images, folders of images and videos.

The helpers here back ``tools/infer.py``:

* :func:`collect_inputs` turns a path into an :class:`InferenceInputs` (an
  image, a folder of images or a video) and fails loudly, naming the path,
  on missing or empty inputs.
* :func:`build_inferencer` builds MMDetection's ``DetInferencer`` for a
  config and checkpoint of this package.
* :func:`det_sample_to_coco` converts one prediction into COCO result
  records (``bbox`` as ``[x, y, w, h]``, and ``segmentation`` as compressed
  RLE when the model predicts masks) with *all* boxes: the score threshold
  only concerns drawing (masks are drawn too).
* :func:`run_inference` runs everything and writes ``vis/`` and
  ``results.json`` under an output folder.
"""
import json
import logging
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np


IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                    '.tiff', '.webp')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.m4v', '.mpg', '.mpeg',
                    '.webm', '.wmv')

# The 80 COCO category ids (1..90 without the ten unused ones).
_COCO_UNUSED_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
COCO_CATEGORY_IDS = [i for i in range(1, 91) if i not in _COCO_UNUSED_IDS]


class InferenceInputError(ValueError):
    """An input path that cannot be used for inference."""


@dataclass
class InferenceInputs:
    """What to run inference on.

    Attributes:
        kind (str): ``'image'``, ``'folder'`` or ``'video'``.
        source (str): The path given by the user.
        files (list[str]): The image files (one for ``'image'``, the sorted
            images of the folder for ``'folder'``) or the video file.
    """
    kind: str
    source: str
    files: List[str] = field(default_factory=list)


def _has_ext(path: str, extensions: Sequence[str]) -> bool:
    """Whether ``path`` ends with one of ``extensions`` (any case)."""
    return path.lower().endswith(tuple(extensions))


def collect_inputs(path: str) -> InferenceInputs:
    """Classify ``path`` as an image, a folder of images or a video.

    A folder contributes the image files directly inside it (not in
    sub-folders), sorted by name.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        InferenceInputError: the folder holds no image, or the file is
            neither an image nor a video by its extension.
    """
    if not osp.exists(path):
        raise FileNotFoundError(f'Input not found: {path}')
    if osp.isdir(path):
        files = sorted(
            osp.join(path, name) for name in os.listdir(path)
            if osp.isfile(osp.join(path, name))
            and _has_ext(name, IMAGE_EXTENSIONS))
        if not files:
            raise InferenceInputError(
                f'No image files ({", ".join(IMAGE_EXTENSIONS)}) in folder: '
                f'{path}')
        return InferenceInputs('folder', path, files)
    if _has_ext(path, IMAGE_EXTENSIONS):
        return InferenceInputs('image', path, [path])
    if _has_ext(path, VIDEO_EXTENSIONS):
        return InferenceInputs('video', path, [path])
    raise InferenceInputError(
        f'Unsupported input file (expected an image {IMAGE_EXTENSIONS} or a '
        f'video {VIDEO_EXTENSIONS}): {path}')


def read_image(path: str) -> np.ndarray:
    """Read an image as a BGR ``uint8`` array.

    Raises:
        InferenceInputError: the file cannot be decoded as an image.
    """
    import mmcv
    try:
        img = mmcv.imread(path, channel_order='bgr')
    except Exception as exc:  # decoding errors differ between backends
        raise InferenceInputError(
            f'Cannot decode image: {path} ({exc})') from exc
    if img is None or img.size == 0:
        raise InferenceInputError(f'Cannot decode image: {path}')
    return img


def coco_category_ids(classes: Sequence[str]) -> List[int]:
    """Category ids for the model's classes, in label order.

    The 80 COCO classes get their official COCO ids; any other class list
    gets ``1..len(classes)``.
    """
    from mmdet.evaluation import get_classes
    if tuple(classes) == tuple(get_classes('coco')):
        return list(COCO_CATEGORY_IDS)
    return list(range(1, len(classes) + 1))


def det_sample_to_coco(data_sample: Any,
                       image_id: Optional[int] = None,
                       file_name: Optional[str] = None,
                       cat_ids: Optional[Sequence[int]] = None
                       ) -> List[Dict[str, Any]]:
    """COCO result records for every predicted box of one image.

    Args:
        data_sample (DetDataSample): A prediction with ``pred_instances``
            holding ``bboxes`` (``x1, y1, x2, y2``), ``scores`` and
            ``labels``.
        image_id (int, optional): Written as ``image_id`` when given.
        file_name (str, optional): Written as ``file_name`` when given.
        cat_ids (Sequence[int], optional): ``category_id`` of each label;
            the label itself when not given.

    Returns:
        list[dict]: One record per box, ``bbox`` as ``[x, y, w, h]``, plus
        ``segmentation`` (COCO compressed RLE) when the prediction has
        ``masks``. No score threshold is applied.
    """
    pred = data_sample.pred_instances
    segmentations = _masks_to_rle(pred.masks) if 'masks' in pred else None
    bboxes = _to_numpy(pred.bboxes).reshape(-1, 4).astype(np.float64)
    scores = _to_numpy(pred.scores).reshape(-1).astype(np.float64)
    labels = _to_numpy(pred.labels).reshape(-1).astype(np.int64)
    records = []
    for (x1, y1, x2, y2), score, label in zip(bboxes, scores, labels):
        record: Dict[str, Any] = {}
        if image_id is not None:
            record['image_id'] = int(image_id)
        if file_name is not None:
            record['file_name'] = file_name
        if cat_ids is not None:
            if not 0 <= label < len(cat_ids):
                raise IndexError(f'Label {label} has no category id '
                                 f'({len(cat_ids)} ids given)')
            record['category_id'] = int(cat_ids[label])
        else:
            record['category_id'] = int(label)
        record['bbox'] = [float(x1), float(y1), float(x2 - x1),
                          float(y2 - y1)]
        record['score'] = float(score)
        records.append(record)
    if segmentations is not None:
        for record, rle in zip(records, segmentations):
            record['segmentation'] = rle
    return records


def _masks_to_rle(masks: Any) -> List[Dict[str, Any]]:
    """COCO compressed RLE (``counts`` as str) of ``(k, H, W)`` masks."""
    from pycocotools import mask as mask_utils
    masks = _to_numpy(masks).astype(np.uint8)
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
    return [dict(size=[int(s) for s in rle['size']],
                 counts=rle['counts'].decode('ascii')) for rle in rles]


def _to_numpy(value: Any) -> np.ndarray:
    """A tensor or array-like as a NumPy array."""
    if hasattr(value, 'detach'):
        value = value.detach().float().cpu().numpy() \
            if value.is_floating_point() else value.detach().cpu().numpy()
    return np.asarray(value)


def default_device() -> str:
    """``'cuda'`` when a CUDA device is available, else ``'cpu'``."""
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def build_inferencer(config: str, checkpoint: str, device: str = 'cpu'):
    """MMDetection's ``DetInferencer`` for a model of this package."""
    for path in (config, checkpoint):
        if not osp.isfile(path):
            raise FileNotFoundError(f'File not found: {path}')
    from mmdet.apis import DetInferencer
    return DetInferencer(
        model=config,
        weights=checkpoint,
        device=device,
        scope='mmdet_sparse',
        show_progress=False)


def predict(inferencer: Any, img_bgr: np.ndarray) -> Any:
    """The ``DetDataSample`` predicted for one BGR image."""
    result = inferencer(
        img_bgr, return_datasamples=True, no_save_vis=True, no_save_pred=True)
    return result['predictions'][0]


def draw(inferencer: Any, img_bgr: np.ndarray, data_sample: Any,
         score_thr: float, out_file: Optional[str] = None) -> np.ndarray:
    """Draw the boxes scoring at least ``score_thr``; returns a BGR image."""
    visualizer = inferencer.visualizer
    if visualizer is None:
        raise RuntimeError('Drawing needs a `visualizer` in the config')
    visualizer.add_datasample(
        'inference',
        np.ascontiguousarray(img_bgr[..., ::-1]),
        data_sample,
        draw_gt=False,
        pred_score_thr=score_thr,
        out_file=out_file)
    return np.ascontiguousarray(visualizer.get_image()[..., ::-1])


def _run_video(inferencer: Any, path: str, vis_dir: str, score_thr: float,
               cat_ids: Sequence[int]
               ) -> Tuple[List[Dict[str, Any]], int, int]:
    """Predict every frame of a video and write the annotated video.

    Returns:
        tuple: the COCO records, the number of frames read and the number
        of frames the container declares (0 when it declares none).
    """
    import cv2
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise InferenceInputError(f'Cannot open video: {path}')
    declared = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    name = osp.basename(path)
    out_file = osp.join(vis_dir, osp.splitext(name)[0] + '.mp4')
    writer = None
    records: List[Dict[str, Any]] = []
    frame_id = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            sample = predict(inferencer, frame)
            records += det_sample_to_coco(sample, frame_id, name, cat_ids)
            drawn = draw(inferencer, frame, sample, score_thr)
            if writer is None:
                h, w = drawn.shape[:2]
                writer = cv2.VideoWriter(
                    out_file, cv2.VideoWriter_fourcc(*'mp4v'), fps, (w, h))
                if not writer.isOpened():
                    raise RuntimeError(f'Cannot write video: {out_file}')
            writer.write(drawn)
            frame_id += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if frame_id == 0:
        raise InferenceInputError(f'No frame could be read from video: '
                                  f'{path}')
    return records, frame_id, declared


def incomplete_video_message(path: str, frames_read: int,
                             frames_declared: int) -> Optional[str]:
    """The warning for a video that ended early (``None`` if it did not).

    A video is incomplete when fewer frames could be decoded than its
    container declares: a file cut short by a copy or a download, or
    frames that fail to decode.
    """
    if frames_declared <= 0 or frames_read >= frames_declared:
        return None
    return (f'Video {path} is incomplete: read {frames_read} of the '
            f'{frames_declared} frames its container declares (cut short or '
            f'damaged); results cover frames 0..{frames_read - 1} only. '
            'Re-copy or re-encode the video (e.g. ffmpeg -i IN -c:v libx264 '
            'OUT.mp4) to run on all of it.')


def run_inference(inferencer: Any, inputs: InferenceInputs, out_dir: str,
                  score_thr: float = 0.3) -> Dict[str, Any]:
    """Run ``inferencer`` on ``inputs``; write ``vis/`` and ``results.json``.

    Images are all decoded first, so that an unreadable one stops the run
    before any model work, with its path in the error.

    A video that ends before the frame count of its container is logged
    as a warning, and ``incomplete`` of the result says so (the results of
    the frames read are written all the same).

    Returns:
        dict: ``vis_dir``, ``results_file``, ``num_records``,
        ``num_frames`` (frames read from a video, else ``None``) and
        ``incomplete`` (the warning for a video cut short, else ``None``).
    """
    vis_dir = osp.join(out_dir, 'vis')
    os.makedirs(vis_dir, exist_ok=True)
    cat_ids = coco_category_ids(inferencer.model.dataset_meta['classes'])
    incomplete = None
    frames = None
    if inputs.kind == 'video':
        records, frames, declared = _run_video(
            inferencer, inputs.files[0], vis_dir, score_thr, cat_ids)
        incomplete = incomplete_video_message(inputs.files[0], frames,
                                              declared)
    else:
        for path in inputs.files:  # fail early on an unreadable image
            read_image(path)
        records = []
        for image_id, path in enumerate(inputs.files):
            img = read_image(path)
            sample = predict(inferencer, img)
            name = osp.basename(path)
            records += det_sample_to_coco(sample, image_id, name, cat_ids)
            draw(inferencer, img, sample, score_thr,
                 out_file=osp.join(vis_dir, name))
    results_file = osp.join(out_dir, 'results.json')
    tmp_file = f'{results_file}.tmp-{os.getpid()}'
    with open(tmp_file, 'w') as f:  # a complete file or the old one
        json.dump(records, f)
    os.replace(tmp_file, results_file)
    if incomplete is not None:
        from mmengine.logging import print_log
        print_log(incomplete, logger='current', level=logging.WARNING)
    return dict(
        vis_dir=vis_dir, results_file=results_file, num_records=len(records),
        num_frames=frames, incomplete=incomplete)
