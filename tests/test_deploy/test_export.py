"""ONNX export of the whole detector: the graph, its metadata and the
refusals (opset, module, transform) with errors that name the culprit."""
import copy
import os.path as osp

import pytest
import torch
from support.deploy_helpers import load_tool
from torch import nn

from mmdet_sparse.deploy import ExportError, export_onnx, preprocess_meta


class _HostCopyBackbone(nn.Module):
    """A backbone that leaves the graph (a NumPy round trip)."""

    def forward(self, img):
        return [torch.from_numpy(img.numpy())]


class TestExport:

    def test_graph_standard_ops_roialign_and_metadata(self, shapes,
                                                      dynamic_onnx):
        """The ``--dynamic`` export of a trained checkpoint."""
        import onnx
        proto = onnx.load(dynamic_onnx['path'])
        domains = {n.domain for n in proto.graph.node}
        assert domains <= {'', 'ai.onnx'}
        assert not proto.functions
        aligns = [n for n in proto.graph.node if n.op_type == 'RoiAlign']
        # 3 stages x 3 pyramid levels, each RoiAlign on its level's RoIs
        assert len(aligns) == 9
        for node in aligns:
            attrs = {a.name: onnx.helper.get_attribute_value(a)
                     for a in node.attribute}
            assert attrs['coordinate_transformation_mode'] == b'half_pixel'
            assert attrs.get('mode', b'avg') == b'avg'
            assert attrs['sampling_ratio'] == 2
            assert (attrs['output_height'], attrs['output_width']) == (7, 7)
        assert proto.opset_import[0].version == 18
        image = proto.graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_value for d in image[:2]] == [1, 3]
        assert all(d.dim_param for d in image[2:])  # H, W free
        meta = dynamic_onnx['meta']
        assert meta['classes'] == list(shapes['cfg'].metainfo.classes)
        pre = meta['preprocess']
        assert pre['mean'] == [123.675, 116.28, 103.53]
        assert pre['bgr_to_rgb'] and pre['pad_size_divisor'] == 32
        assert pre['resize'] == dict(
            scale=[256, 256], scale_factor=None, keep_ratio=True,
            interpolation='bilinear', backend='cv2')
        assert meta['max_per_img'] == meta['num_proposals'] == 40

    @pytest.mark.parametrize('opset', [15, 22, 23])
    def test_unsupported_opset_is_refused(self, shapes, tmp_path, capsys,
                                          opset):
        out = tmp_path / 'x.onnx'
        with pytest.raises(ExportError, match=f'opset {opset} '):
            export_onnx(shapes['cfg'], None, str(out), opset=opset)
        assert not out.exists()
        cfg_file = str(tmp_path / 'cfg.py')
        shapes['cfg'].dump(cfg_file)
        exporter = load_tool('deployment', 'export_onnx.py')
        code = exporter.main([cfg_file, 'none.pth', '--out', str(out),
                              '--opset', str(opset)])
        assert code == 2
        assert f'opset {opset} is not supported' in capsys.readouterr().err

    def test_compiled_mmcv_module_is_refused_by_name(self, shapes,
                                                     trained, tmp_path):
        from mmcv.ops import ModulatedDeformConv2dPack
        model = copy.deepcopy(trained['model'])
        model.backbone.layer2[0].conv2 = ModulatedDeformConv2dPack(
            64, 64, 3, padding=1, bias=False)
        with pytest.raises(ExportError) as err:
            export_onnx(shapes['cfg'], None, str(tmp_path / 'x.onnx'),
                        model=model)
        assert 'model.backbone.layer2.0.conv2' in str(err.value)
        assert 'ModulatedDeformConv2dPack' in str(err.value)

    def test_failure_inside_a_module_names_it(self, shapes, trained,
                                              tmp_path):
        model = copy.deepcopy(trained['model'])
        model.backbone = _HostCopyBackbone()
        with pytest.raises(ExportError, match=r'model\.backbone '
                           r'\(_HostCopyBackbone\) failed to export'):
            export_onnx(shapes['cfg'], None, str(tmp_path / 'x.onnx'),
                        img_size=(64, 64), model=model)

    def test_unsupported_test_transform_and_size_are_refused(
            self, shapes, trained, tmp_path):
        cfg = copy.deepcopy(shapes['cfg'])
        pipeline = cfg.test_dataloader.dataset.pipeline
        pipeline.insert(2, dict(type='RandomFlip', prob=1.0))
        with pytest.raises(ExportError, match='RandomFlip'):
            preprocess_meta(cfg)
        with pytest.raises(ExportError, match='multiples of '
                           'pad_size_divisor=32'):
            export_onnx(shapes['cfg'], None, str(tmp_path / 'x.onnx'),
                        img_size=(100, 128), model=trained['model'])

    def test_float16_model_exports_a_float32_cpu_copy(self, shapes, trained,
                                                      tmp_path):
        """A model cast for AMP (or on a GPU: the same copy is made) is
        exported from a float32 CPU copy and left as it is."""
        import onnx
        from mmdet_sparse.deploy.export import cpu_float32
        model = copy.deepcopy(trained['model']).half()
        out = tmp_path / 'half.onnx'
        export_onnx(shapes['cfg'], None, str(out), img_size=(64, 64),
                    model=model)
        assert next(model.parameters()).dtype == torch.float16
        weights = {t.name: t.data_type for t in onnx.load(str(out))
                   .graph.initializer}
        assert onnx.TensorProto.FLOAT16 not in weights.values()
        ref = trained['model']
        assert cpu_float32(ref) is ref  # float32 on the CPU: no copy


def test_queryinst_is_refused_by_name(tmp_path):
    """The graph gives boxes only: QueryInst's masks are not dropped
    silently."""
    from support.deploy_helpers import REPO
    from mmdet_sparse.deploy import build_detector
    cfg = osp.join(REPO, 'configs', 'queryinst',
                   'queryinst_r18_fpn_shapes_demo.py')
    model, cfg = build_detector(cfg)
    out = tmp_path / 'queryinst.onnx'
    with pytest.raises(ExportError, match=r'model\.roi_head\.mask_head '
                       r'\(DynamicMaskHead\).*QueryInst'):
        export_onnx(cfg, None, str(out), model=model)
    assert not out.exists()
