"""The runtime (ONNX Runtime and OpenVINO) against PyTorch:
preprocessing, one dynamic file at two input sizes, a briefly trained
checkpoint, COCO evaluation and ``tools/infer.py --backend``."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from support.deploy_helpers import load_tool
from mmengine.registry import DefaultScope

from mmdet_sparse.deploy import (BACKENDS, OnnxDetector, compare_detections,
                                 preprocess)

backends = pytest.mark.parametrize('backend', BACKENDS)


def _val_images(shapes):
    folder = shapes['info']['val']['img_dir']
    return [osp.join(folder, f'{i:06d}.png') for i in (1, 2, 3)]


def _eager(model, pre):
    """PyTorch predictions on the runtime's preprocessed input, in the
    network-input frame."""
    from mmdet.structures import DetDataSample
    h, w = (int(v) for v in pre.image_size)
    sample = DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=pre.ori_shape,
        batch_input_shape=tuple(pre.image.shape[-2:]),
        scale_factor=pre.scale_factor))
    with torch.no_grad():
        out = model.predict(torch.from_numpy(pre.image), [sample],
                            rescale=False)[0].pred_instances
    return out.bboxes.numpy(), out.scores.numpy(), out.labels.numpy()


def _assert_parity(ort_out, ref_out):
    res = compare_detections(*ort_out, *ref_out)
    assert res['missing'] == 0, res
    assert res['matched'] >= res['k'] - 2, res
    assert res['max_score_diff'] <= 1e-4, res
    assert res['max_box_diff'] <= 0.1, res
    return res


class TestRuntime:

    def test_preprocess_matches_test_pipeline(self, shapes, trained,
                                              dynamic_onnx):
        from mmdet_sparse.registry import DATASETS
        with DefaultScope.overwrite_default_scope('mmdet_sparse'):
            dataset = DATASETS.build(shapes['cfg'].test_dataloader.dataset)
        meta = dynamic_onnx['meta']['preprocess']
        for index in range(2):
            item = dataset[index]
            data = trained['model'].data_preprocessor(
                dict(inputs=[item['inputs']],
                     data_samples=[item['data_samples']]), False)
            ref = data['inputs'].numpy()
            info = item['data_samples'].metainfo
            import mmcv
            pre = preprocess(mmcv.imread(info['img_path']), meta)
            assert pre.image.shape == ref.shape
            np.testing.assert_array_equal(pre.image, ref)
            assert tuple(pre.image_size) == info['img_shape']
            assert pre.scale_factor == tuple(info['scale_factor'])
            assert pre.ori_shape == info['ori_shape']

    @backends
    def test_dynamic_model_two_sizes_matches_pytorch(self, shapes,
                                                     trained,
                                                     dynamic_onnx, backend):
        """A checkpoint trained a few iterations, exported with
        ``--dynamic``, run at two input sizes from the one file."""
        detector = OnnxDetector(dynamic_onnx['path'], num_threads=1,
                                backend=backend)
        import mmcv
        img = mmcv.imread(_val_images(shapes)[0])
        sizes = set()
        # landscape 96x128 -> 192x256 and portrait 128x96 -> 256x192
        for image in (img, np.ascontiguousarray(img.transpose(1, 0, 2))):
            pre = detector.preprocess(image)
            sizes.add(pre.image.shape[-2:])
            ort_out = detector.run(pre.image, pre.image_size)
            assert ort_out[0].shape == (40, 4)
            _assert_parity(ort_out, _eager(trained['model'], pre))
            # the whole call: boxes in the original image's frame
            full = detector(image)
            np.testing.assert_allclose(
                full['bboxes'] * np.tile(pre.scale_factor, 2), ort_out[0],
                rtol=1e-6, atol=1e-4)
        assert sizes == {(192, 256), (256, 192)}

    @backends
    def test_coco_evaluation_matches_pytorch(self, shapes, trained,
                                             dynamic_onnx, backend):
        """``test_onnx.py``'s COCO mAP equals PyTorch's on the same val
        images with the same metric."""
        cfg = shapes['cfg']
        tester = load_tool('deployment', 'test_onnx.py')
        onnx_metrics = tester.evaluate(cfg, dynamic_onnx['path'], 1,
                                       log=lambda *a: None, backend=backend)
        torch_metrics = _pytorch_metrics(cfg, trained['model'])
        for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50'):
            assert abs(onnx_metrics[key] - torch_metrics[key]) <= 0.002

    @backends
    def test_infer_tool_onnx_backends(self, shapes, dynamic_onnx, tmp_path,
                                      backend):
        infer = load_tool('infer.py')
        image = _val_images(shapes)[1]
        infer.main(['--backend', backend, dynamic_onnx['path'], image,
                    '--out-dir', str(tmp_path)])
        records = json.loads((tmp_path / 'results.json').read_text())
        out = OnnxDetector(dynamic_onnx['path'], backend=backend)(image)
        assert len(records) == len(out['scores']) == 40
        got = np.array([r['bbox'] for r in records])
        want = out['bboxes'].copy()
        want[:, 2:] -= want[:, :2]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
        assert osp.isfile(tmp_path / 'vis' / osp.basename(image))
        with pytest.raises(SystemExit):
            infer.parse_args(['--backend', backend, 'a.onnx', 'b.png',
                              'c.png'])

    def test_backends_agree(self, shapes, dynamic_onnx):
        """OpenVINO (float32 forced) and ONNX Runtime on the same file: the
        same detections up to float rounding."""
        import mmcv
        img = mmcv.imread(_val_images(shapes)[2])
        outs = [OnnxDetector(dynamic_onnx['path'], 1, backend=b)(img)
                for b in BACKENDS]
        _assert_parity(*[(o['bboxes'], o['scores'], o['labels'])
                         for o in outs])

    def test_openvino_refuses_backbones_it_computes_wrongly(
            self, dynamic_onnx):
        from mmdet_sparse.deploy.runtime import (OPENVINO_REFUSED_BACKBONES,
                                                 check_backend)
        meta = dynamic_onnx['meta']
        assert meta['backbone'] == 'ResNet'
        check_backend(meta, 'openvino', 'demo.onnx')
        for name in OPENVINO_REFUSED_BACKBONES:
            bad = dict(meta, backbone=name)
            with pytest.raises(ValueError,
                               match=f'vit.onnx.*{name}.*onnxruntime'):
                check_backend(bad, 'openvino', 'vit.onnx')
            check_backend(bad, 'onnxruntime', 'vit.onnx')

    def test_unknown_backend_is_refused(self, dynamic_onnx):
        with pytest.raises(ValueError, match="'tensorflow'.*onnxruntime"):
            OnnxDetector(dynamic_onnx['path'], backend='tensorflow')

    @backends
    def test_model_without_export_metadata_is_refused(self, tmp_path,
                                                      backend):
        import onnx
        from onnx import TensorProto, helper
        graph = helper.make_graph(
            [helper.make_node('Identity', ['x'], ['y'])], 'g',
            [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])])
        path = str(tmp_path / 'plain.onnx')
        onnx.save(helper.make_model(
            graph, opset_imports=[helper.make_opsetid('', 18)]), path)
        with pytest.raises(ValueError, match='plain.onnx.*metadata'):
            OnnxDetector(path, backend=backend)
        with pytest.raises(FileNotFoundError, match='missing.onnx'):
            OnnxDetector(str(tmp_path / 'missing.onnx'), backend=backend)


def _pytorch_metrics(cfg, model) -> dict:
    """The config's test metric on PyTorch predictions of ``model``."""
    from mmengine.dataset import pseudo_collate
    from mmengine.evaluator import Evaluator

    from mmdet_sparse.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmdet_sparse'):
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        evaluator = Evaluator(cfg.test_evaluator)
    evaluator.dataset_meta = dataset.metainfo
    with torch.no_grad():
        for index in range(len(dataset)):
            batch = pseudo_collate([dataset[index]])
            evaluator.process(model.test_step(batch), batch)
    return evaluator.evaluate(len(dataset))


_NO_TORCH_SCRIPT = r'''
import importlib.abc, json, sys
BLOCKED = ('torch', 'torchvision', 'mmcv', 'mmdet', 'mmengine')


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:  # as if not installed
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)


sys.meta_path.insert(0, Blocker())
repo, model, image = sys.argv[1:4]
sys.path.insert(0, repo)
import mmdet_sparse
assert not mmdet_sparse.TRAINING_STACK
from mmdet_sparse.deploy import OnnxDetector
out = OnnxDetector(model, 1)(image)
assert not any(m.split('.')[0] in BLOCKED for m in sys.modules)
print(json.dumps({k: out[k].tolist() for k in ('bboxes', 'scores',
                                               'labels')}))
'''


def test_runtime_runs_without_torch_mmcv_mmdet(shapes, dynamic_onnx):
    """``OnnxDetector`` with torch, torchvision, mmcv, mmdet and mmengine
    made unimportable (a ``sys.meta_path`` blocker, in a subprocess): the
    same detections as in this process."""
    import subprocess
    import sys

    from support.helpers import REPO
    image = _val_images(shapes)[0]
    proc = subprocess.run(
        [sys.executable, '-c', _NO_TORCH_SCRIPT, REPO, dynamic_onnx['path'],
         image], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    want = OnnxDetector(dynamic_onnx['path'], 1)(image)
    for key in ('bboxes', 'scores', 'labels'):
        np.testing.assert_array_equal(np.asarray(got[key], want[key].dtype),
                                      want[key])
