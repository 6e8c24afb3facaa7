"""int8 quantization (``tools/deployment/quantize.py``) and the bf16
precision of the runtime, on the briefly trained tiny demo model."""
import copy
import json
import os
import os.path as osp

import numpy as np
import pytest
from support.deploy_helpers import load_tool

from mmdet_sparse.deploy import OnnxDetector, runtime
from mmdet_sparse.deploy.quantize import QuantizeError

# The tiny model is trained for 3 steps: its top-40 scores are flat
# (0.06-0.12), so int8 rounding reorders them and the two top-k lists hold
# slightly different (proposal, label) pairs. Compared instead: the sorted
# score lists, and the distance (max over coordinates) of each box to the
# nearest float32 box (192x256 input). Measured on the 3 val images, both
# runtimes, three quantizations: score difference <= 0.005, median box
# distance <= 0.8 px, at most 1 of the 40 boxes farther than 4 px (a
# proposal in one top-k only).
INT8_SCORE_TOL, INT8_MEDIAN_BOX_TOL, INT8_FAR = 0.02, 2.0, 3
# OpenVINO bf16 against its float32, same measure: score <= 0.0012,
# median box distance <= 0.3 px, at most 1 far box.
BF16_SCORE_TOL, BF16_MEDIAN_BOX_TOL, BF16_FAR = 0.02, 2.0, 3


def _closeness(out, ref):
    """Largest difference of the sorted scores, median distance from a box
    of ``out`` to the nearest box of ``ref`` and how many are farther
    than 4 px."""
    boxes, scores = out[:2]
    ref_boxes, ref_scores = ref[:2]
    score = float(np.abs(np.sort(scores) - np.sort(ref_scores)).max())
    dist = np.array([np.abs(ref_boxes - box).max(1).min() for box in boxes])
    return score, float(np.median(dist)), int((dist > 4).sum())


def _val_images(shapes):
    folder = shapes['info']['val']['img_dir']
    return [osp.join(folder, f'{i:06d}.png') for i in (1, 2, 3)]


def _props(path):
    import onnx
    model = onnx.load(path)
    return model, {p.key: p.value for p in model.metadata_props}


@pytest.fixture(scope='module')
def int8(trained, dynamic_onnx, tmp_path_factory):
    """``quantize.py CONFIG demo_dynamic.onnx`` on the 4 train images."""
    path = str(tmp_path_factory.mktemp('int8') / 'demo_int8.onnx')
    tool = load_tool('deployment', 'quantize.py')
    assert tool.main([trained['config'], dynamic_onnx['path'], '--out', path,
                      '--split', 'train', '--num-images', '4']) == 0
    return path


class TestQuantize:

    def test_quantized_graph_and_metadata(self, dynamic_onnx, int8):
        model, props = _props(int8)
        assert props['quantization'] == 'int8'
        meta = json.loads(props['mmdet_sparse'])
        quant = meta.pop('quantization')
        assert meta == dynamic_onnx['meta']
        assert quant['dtype'] == 'int8' and quant['format'] == 'QDQ'
        assert quant['calibration']['num_images'] == 4
        assert quant['calibration']['split'] == 'train'
        ops = [n.op_type for n in model.graph.node]
        assert ops.count('QuantizeLinear') > 20
        # the activation products (dynamic convolution, attention) stay
        # float32: neither input dequantized
        dequantized = {o for n in model.graph.node
                       if n.op_type == 'DequantizeLinear' for o in n.output}
        products = [n for n in model.graph.node if n.op_type == 'MatMul'
                    and n.input[1] not in dequantized]
        assert len(products) == quant['float_nodes'] >= 6
        assert not {i for n in products for i in n.input} & dequantized
        for op in ('Softmax', 'Sigmoid', 'TopK', 'LayerNormalization'):
            for node in model.graph.node:
                if node.op_type == op:
                    assert not set(node.input) & dequantized, node.name
        assert OnnxDetector(int8).quantization == 'int8'
        assert OnnxDetector(dynamic_onnx['path']).quantization is None

    @pytest.mark.parametrize('backend', runtime.BACKENDS)
    def test_int8_close_to_float32(self, shapes, dynamic_onnx, int8,
                                   backend):
        import mmcv
        fp32 = OnnxDetector(dynamic_onnx['path'], 1, backend=backend)
        q = OnnxDetector(int8, 1, backend=backend)
        for path in _val_images(shapes):
            pre = fp32.preprocess(mmcv.imread(path))
            score, box, far = _closeness(q.run(pre.image, pre.image_size),
                                         fp32.run(pre.image, pre.image_size))
            assert score <= INT8_SCORE_TOL, (path, score)
            assert box <= INT8_MEDIAN_BOX_TOL and far <= INT8_FAR, \
                (path, box, far)

    def test_tools_run_the_int8_file(self, shapes, int8, tmp_path):
        infer = load_tool('infer.py')
        infer.main(['--backend', 'onnxruntime', int8,
                    _val_images(shapes)[0], '--out-dir', str(tmp_path),
                    '--threads', '1'])
        records = json.loads((tmp_path / 'results.json').read_text())
        assert len(records) == 40
        tester = load_tool('deployment', 'test_onnx.py')
        metrics = tester.evaluate(shapes['cfg'], int8, 1,
                                  log=lambda *a: None)
        assert 'coco/bbox_mAP' in metrics

    def test_bad_inputs_are_refused(self, shapes, trained, dynamic_onnx,
                                    int8, tmp_path, capsys):
        from mmdet_sparse.deploy.quantize import quantize_onnx
        out = str(tmp_path / 'out.onnx')
        cfg = copy.deepcopy(shapes['cfg'])
        # a dataset that is not there: the path and the config field
        cfg.train_dataloader.dataset.data_root = str(tmp_path / 'nowhere')
        with pytest.raises(QuantizeError, match='nowhere.*train_dataloader'
                           r'\.dataset\.ann_file.*--cfg-options'):
            quantize_onnx(cfg, dynamic_onnx['path'], out)
        # fewer images than asked: both counts and the option
        with pytest.raises(QuantizeError,
                           match='has 4 images.*5 asked.*--num-images 4'):
            quantize_onnx(shapes['cfg'], dynamic_onnx['path'], out,
                          num_images=5)
        # not a file of the exporter
        import onnx
        from onnx import TensorProto, helper
        graph = helper.make_graph(
            [helper.make_node('Identity', ['x'], ['y'])], 'g',
            [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])])
        plain = str(tmp_path / 'plain.onnx')
        onnx.save(helper.make_model(
            graph, opset_imports=[helper.make_opsetid('', 18)]), plain)
        with pytest.raises(QuantizeError, match='plain.onnx.*metadata'):
            quantize_onnx(shapes['cfg'], plain, out)
        # already quantized
        with pytest.raises(QuantizeError, match='already quantized'):
            quantize_onnx(shapes['cfg'], int8, out, num_images=2)
        tool = load_tool('deployment', 'quantize.py')
        assert tool.main([trained['config'], int8, '--out', out]) == 2
        assert 'already quantized' in capsys.readouterr().err
        assert not osp.exists(out)

    def test_failed_quantization_leaves_no_output(self, shapes,
                                                  dynamic_onnx, tmp_path,
                                                  monkeypatch):
        import onnxruntime.quantization

        from mmdet_sparse.deploy import quantize
        out = tmp_path / 'model_int8.onnx'
        out.write_bytes(b'old')

        def broken(*args, **kwargs):
            raise RuntimeError('calibration failed')
        monkeypatch.setattr(onnxruntime.quantization, 'quantize_static',
                            broken)
        with pytest.raises(RuntimeError, match='calibration failed'):
            quantize.quantize_onnx(shapes['cfg'], dynamic_onnx['path'],
                                   str(out), num_images=2)
        assert out.read_bytes() == b'old'
        assert os.listdir(tmp_path) == ['model_int8.onnx']
        monkeypatch.undo()
        # an image that cannot be read, in the middle of the calibration
        bad = tmp_path / 'bad.png'
        bad.write_bytes(b'not an image')
        reader = quantize.ImageCalibrationReader(
            _val_images(shapes)[:1] + [str(bad)], dynamic_onnx['meta'])
        new = tmp_path / 'new.onnx'
        with pytest.raises(Exception, match='bad.png'):
            quantize.quantize_model(dynamic_onnx['path'], str(new), reader)
        assert sorted(os.listdir(tmp_path)) == ['bad.png',
                                                'model_int8.onnx']

    def test_bf16_refused(self, dynamic_onnx, monkeypatch):
        path = dynamic_onnx['path']
        with pytest.raises(ValueError, match='ONNX Runtime.*bfloat16.*'
                           'openvino'):
            OnnxDetector(path, backend='onnxruntime', precision='bf16')
        with pytest.raises(ValueError, match="unknown precision 'fp16'"):
            OnnxDetector(path, backend='openvino', precision='fp16')
        # a CPU without bfloat16 instructions
        monkeypatch.setattr(runtime, 'cpu_has_bf16', lambda core=None: False)
        with pytest.raises(ValueError, match='bfloat16 instructions.*'
                           'lacks.*--precision fp32'):
            OnnxDetector(path, backend='openvino', precision='bf16')
        infer = load_tool('infer.py')
        with pytest.raises(SystemExit):
            infer.parse_args(['cfg.py', 'ckpt.pth', 'a.png', '--precision',
                              'bf16'])

    def test_test_onnx_refuses_bf16_with_onnxruntime(self, trained,
                                                     dynamic_onnx, capsys):
        tester = load_tool('deployment', 'test_onnx.py')
        assert tester.main([trained['config'], dynamic_onnx['path'],
                            '--precision', 'bf16']) == 2
        assert 'ONNX Runtime' in capsys.readouterr().err

    def test_fixed_size_model_quantizes(self, shapes, trained, tmp_path):
        """A fixed-size export: calibration images padded to its size."""
        import mmcv

        from mmdet_sparse.deploy import export_onnx
        from mmdet_sparse.deploy.quantize import quantize_onnx
        path, out = str(tmp_path / 'fixed.onnx'), str(tmp_path / 'q.onnx')
        export_onnx(shapes['cfg'], None, path, img_size=(256, 256),
                    model=trained['model'])
        meta = quantize_onnx(shapes['cfg'], path, out, split='val',
                             num_images=3)
        assert meta['quantization']['calibration']['split'] == 'val'
        img = mmcv.imread(_val_images(shapes)[0])
        ref = OnnxDetector(path, 1)
        pre = ref.preprocess(img)
        assert pre.image.shape[-2:] == (256, 256)
        score, box, far = _closeness(
            OnnxDetector(out, 1).run(pre.image, pre.image_size),
            ref.run(pre.image, pre.image_size))
        assert score <= INT8_SCORE_TOL, score
        assert box <= INT8_MEDIAN_BOX_TOL and far <= INT8_FAR, (box, far)

    def test_bf16_runs_where_available(self, shapes, dynamic_onnx, int8):
        if not runtime.cpu_has_bf16():
            pytest.skip('this CPU has no bfloat16 instructions '
                        '(OpenVINO CPU capabilities lack BF16)')
        import mmcv
        fp32 = OnnxDetector(dynamic_onnx['path'], 1, backend='openvino')
        bf16 = OnnxDetector(dynamic_onnx['path'], 1, backend='openvino',
                            precision='bf16')
        for path in _val_images(shapes):
            pre = fp32.preprocess(mmcv.imread(path))
            score, box, far = _closeness(bf16.run(pre.image, pre.image_size),
                                         fp32.run(pre.image, pre.image_size))
            assert score <= BF16_SCORE_TOL, (path, score)
            assert box <= BF16_MEDIAN_BOX_TOL and far <= BF16_FAR, \
                (path, box, far)
        # an int8 file in bf16: its float parts in bfloat16
        out = OnnxDetector(int8, 1, backend='openvino', precision='bf16')(
            _val_images(shapes)[0])
        assert len(out['scores']) == 40
