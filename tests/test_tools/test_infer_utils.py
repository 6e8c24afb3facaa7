"""Tests of the inference helpers that need no trained model."""
import importlib.util
import json
import os.path as osp
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmdet_sparse.apis import (COCO_CATEGORY_IDS, InferenceInputError,
                               coco_category_ids, collect_inputs,
                               det_sample_to_coco, incomplete_video_message,
                               read_image, run_inference)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _write_image(path, h=24, w=32):
    img = np.random.RandomState(0).randint(0, 255, (h, w, 3), np.uint8)
    assert cv2.imwrite(str(path), img)
    return img


def _sample(bboxes, scores, labels):
    sample = DetDataSample()
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor(bboxes, dtype=torch.float32).reshape(-1, 4),
        scores=torch.tensor(scores, dtype=torch.float32),
        labels=torch.tensor(labels, dtype=torch.long))
    return sample


class _StubVisualizer:
    """Records the drawing calls; writes ``out_file`` like the real one."""

    def __init__(self):
        self.calls = []
        self._img = None

    def add_datasample(self, name, image, data_sample, draw_gt=True,
                       pred_score_thr=0.3, out_file=None, **kwargs):
        self.calls.append(dict(thr=pred_score_thr, out_file=out_file))
        self._img = image
        if out_file is not None:
            cv2.imwrite(out_file, np.ascontiguousarray(image[..., ::-1]))

    def get_image(self):
        return self._img


class _StubInferencer:
    """Stands in for ``DetInferencer``: one fixed prediction per image."""

    def __init__(self, classes=('a', 'b', 'c')):
        self.model = SimpleNamespace(dataset_meta=dict(classes=classes))
        self.visualizer = _StubVisualizer()
        self.images = []

    def __call__(self, img, return_datasamples=False, **kwargs):
        assert return_datasamples
        self.images.append(img)
        sample = _sample([[1, 2, 11, 22], [0, 0, 4, 4]], [0.9, 0.01], [0, 2])
        return dict(predictions=[sample], visualization=[])


def test_collect_image_folder_video(tmp_path):
    img = tmp_path / 'one.JPG'
    _write_image(img)
    res = collect_inputs(str(img))
    assert (res.kind, res.files) == ('image', [str(img)])

    folder = tmp_path / 'imgs'
    (folder / 'nested').mkdir(parents=True)
    for name in ('b.png', 'a.jpg', 'nested/c.jpg'):
        _write_image(folder / name)
    (folder / 'notes.txt').write_text('not an image')
    res = collect_inputs(str(folder))
    assert res.kind == 'folder'
    assert res.files == [str(folder / 'a.jpg'), str(folder / 'b.png')]

    video = tmp_path / 'clip.mp4'
    video.write_bytes(b'')
    assert collect_inputs(str(video)).kind == 'video'


def test_collect_errors_name_the_path(tmp_path):
    missing = tmp_path / 'missing.jpg'
    with pytest.raises(FileNotFoundError, match='missing.jpg'):
        collect_inputs(str(missing))

    empty = tmp_path / 'empty_dir'
    empty.mkdir()
    with pytest.raises(InferenceInputError, match='empty_dir'):
        collect_inputs(str(empty))

    only_text = tmp_path / 'text_dir'
    only_text.mkdir()
    (only_text / 'a.txt').write_text('x')
    with pytest.raises(InferenceInputError, match='text_dir'):
        collect_inputs(str(only_text))

    other = tmp_path / 'model.pth'
    other.write_bytes(b'x')
    with pytest.raises(InferenceInputError, match='model.pth'):
        collect_inputs(str(other))


def test_read_image(tmp_path):
    good = tmp_path / 'good.png'
    img = _write_image(good)
    np.testing.assert_array_equal(read_image(str(good)), img)
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'not a jpeg')
    with pytest.raises(InferenceInputError, match='broken.jpg'):
        read_image(str(bad))


def test_det_sample_to_coco():
    sample = _sample([[10, 20, 30, 60], [0, 0, 5, 5]], [0.9, 0.05], [0, 2])
    records = det_sample_to_coco(sample, 7, 'x.jpg', cat_ids=[1, 5, 9])
    assert records == [
        dict(image_id=7, file_name='x.jpg', category_id=1,
             bbox=[10.0, 20.0, 20.0, 40.0], score=pytest.approx(0.9)),
        dict(image_id=7, file_name='x.jpg', category_id=9,
             bbox=[0.0, 0.0, 5.0, 5.0], score=pytest.approx(0.05)),
    ]
    json.dumps(records)  # plain Python types only

    plain = det_sample_to_coco(sample)
    assert [r['category_id'] for r in plain] == [0, 2]
    assert 'image_id' not in plain[0] and 'file_name' not in plain[0]
    assert det_sample_to_coco(_sample([], [], [])) == []
    with pytest.raises(IndexError):
        det_sample_to_coco(sample, cat_ids=[1])


def test_coco_category_ids():
    from mmdet.evaluation import get_classes
    ids = coco_category_ids(get_classes('coco'))
    assert ids == COCO_CATEGORY_IDS
    assert len(ids) == 80 and ids[0] == 1 and ids[-1] == 90
    assert 12 not in ids and 83 not in ids
    assert coco_category_ids(['cat', 'dog']) == [1, 2]


def test_run_inference_keeps_all_boxes(tmp_path):
    folder = tmp_path / 'imgs'
    folder.mkdir()
    for name in ('a.jpg', 'b.png'):
        _write_image(folder / name)
    inferencer = _StubInferencer()
    out = run_inference(inferencer, collect_inputs(str(folder)),
                        str(tmp_path / 'out'), score_thr=0.5)
    records = json.load(open(out['results_file']))
    assert out['num_records'] == len(records) == 4
    assert sorted(r['score'] for r in records)[0] == pytest.approx(0.01)
    assert {r['file_name'] for r in records} == {'a.jpg', 'b.png'}
    assert [r['category_id'] for r in records[:2]] == [1, 3]
    assert records[0]['bbox'] == [1.0, 2.0, 10.0, 20.0]
    assert all(c['thr'] == 0.5 for c in inferencer.visualizer.calls)
    for name in ('a.jpg', 'b.png'):
        assert osp.isfile(osp.join(out['vis_dir'], name))


def test_run_inference_reports_unreadable_image(tmp_path):
    folder = tmp_path / 'imgs'
    folder.mkdir()
    _write_image(folder / 'a.jpg')
    (folder / 'z_corrupt.png').write_bytes(b'garbage')
    inferencer = _StubInferencer()
    with pytest.raises(InferenceInputError, match='z_corrupt.png'):
        run_inference(inferencer, collect_inputs(str(folder)),
                      str(tmp_path / 'out'))
    assert inferencer.images == []  # stopped before any prediction


def test_run_inference_video(tmp_path):
    video = tmp_path / 'clip.mp4'
    writer = cv2.VideoWriter(
        str(video), cv2.VideoWriter_fourcc(*'mp4v'), 5.0, (32, 24))
    if not writer.isOpened():
        pytest.skip('OpenCV cannot write mp4 here')
    for i in range(3):
        writer.write(np.full((24, 32, 3), 40 * i, np.uint8))
    writer.release()
    inferencer = _StubInferencer()
    out = run_inference(inferencer, collect_inputs(str(video)),
                        str(tmp_path / 'out'))
    records = json.load(open(out['results_file']))
    assert len(inferencer.images) == 3
    assert sorted({r['image_id'] for r in records}) == [0, 1, 2]
    assert len(records) == 6
    assert osp.getsize(osp.join(out['vis_dir'], 'clip.mp4')) > 0


def test_broken_video_names_path(tmp_path):
    video = tmp_path / 'broken.mp4'
    video.write_bytes(b'not a video')
    with pytest.raises(InferenceInputError, match='broken.mp4'):
        run_inference(_StubInferencer(), collect_inputs(str(video)),
                      str(tmp_path / 'out'))


def test_infer_cli_missing_input(tmp_path):
    spec = importlib.util.spec_from_file_location(
        'infer_cli', osp.join(REPO, 'tools', 'infer.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    missing = str(tmp_path / 'nothing_here')
    with pytest.raises(FileNotFoundError, match='nothing_here'):
        cli.main(['cfg.py', 'ckpt.pth', missing])


def _write_video(path, frames=20, cut=0.5):
    """An MJPG AVI of ``frames`` noise frames, then cut to ``cut`` of its
    bytes (its header still declares all frames)."""
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*'MJPG'), 5.0, (32, 24))
    if not writer.isOpened():
        pytest.skip('OpenCV cannot write MJPG AVI here')
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * cut)])


def test_video_cut_short_is_reported(tmp_path):
    whole = tmp_path / 'whole.avi'
    _write_video(whole, cut=1.0)
    out = run_inference(_StubInferencer(), collect_inputs(str(whole)),
                        str(tmp_path / 'out_whole'))
    assert (out['num_frames'], out['incomplete']) == (20, None)

    video = tmp_path / 'cut.avi'
    _write_video(video)
    inferencer = _StubInferencer()
    out = run_inference(inferencer, collect_inputs(str(video)),
                        str(tmp_path / 'out'))
    read = len(inferencer.images)
    assert 0 < read < 20 and out['num_frames'] == read
    assert out['incomplete'] == incomplete_video_message(str(video), read, 20)
    assert f'{video} is incomplete: read {read} of the 20 frames' in \
        out['incomplete']
    records = json.load(open(out['results_file']))  # kept, as far as read
    assert sorted({r['image_id'] for r in records}) == list(range(read))


def test_infer_cli_fails_on_a_video_cut_short(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        'infer_cli', osp.join(REPO, 'tools', 'infer.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    cli.build_inferencer = lambda *args: _StubInferencer()
    video = tmp_path / 'cut.avi'
    _write_video(video)
    out_dir = tmp_path / 'out'
    with pytest.raises(SystemExit) as exc:
        cli.main(['cfg.py', 'ckpt.pth', str(video), '--out-dir',
                  str(out_dir), '--device', 'cpu'])
    assert exc.value.code == cli.EXIT_INCOMPLETE == 3
    captured = capsys.readouterr()
    assert f'WARNING: Video {video} is incomplete: read ' in captured.err
    assert 'of the 20 frames' in captured.err
    assert 'frame(s) of the video' in captured.out
    assert (out_dir / 'results.json').is_file()


def test_det_sample_to_coco_writes_masks_as_rle():
    from pycocotools import mask as mask_utils
    sample = _sample([[1, 2, 5, 6], [0, 0, 3, 3]], [0.9, 0.2], [0, 1])
    masks = torch.zeros(2, 10, 12, dtype=torch.bool)
    masks[0, 2:6, 1:5] = True
    masks[1, 0:3, 0:3] = True
    sample.pred_instances.masks = masks
    records = det_sample_to_coco(sample, image_id=3, cat_ids=[1, 2])
    assert len(records) == 2
    for record, mask in zip(records, masks):
        rle = record['segmentation']
        assert rle['size'] == [10, 12] and isinstance(rle['counts'], str)
        decoded = mask_utils.decode(dict(rle, counts=rle['counts'].encode()))
        assert np.array_equal(decoded.astype(bool), mask.numpy())
    json.dumps(records)  # JSON-ready
    # Without masks, no segmentation.
    plain = det_sample_to_coco(_sample([[1, 2, 5, 6]], [0.5], [0]))
    assert 'segmentation' not in plain[0]


def test_draw_shows_masks():
    """The visualiser of the inference tool paints predicted masks."""
    from mmdet.visualization import DetLocalVisualizer
    from mmdet_sparse.apis import draw
    img = np.full((40, 48, 3), 128, np.uint8)
    inferencer = SimpleNamespace(visualizer=DetLocalVisualizer(
        name='mask_test', line_width=1))
    inferencer.visualizer.dataset_meta = dict(classes=('a', 'b'),
                                              palette=[(255, 0, 0),
                                                       (0, 255, 0)])
    sample = _sample([[0, 0, 4, 4]], [0.9], [0])
    plain = draw(inferencer, img, sample, 0.3)
    masks = torch.zeros(1, 40, 48, dtype=torch.bool)
    masks[0, 20:30, 20:40] = True
    sample.pred_instances.masks = masks
    with_mask = draw(inferencer, img, sample, 0.3)
    changed = np.abs(with_mask.astype(int) - plain.astype(int)).sum(-1) > 0
    assert changed[22:28, 22:38].all()  # inside the mask
    assert not changed[:, :18][12:].any()  # away from mask and box
