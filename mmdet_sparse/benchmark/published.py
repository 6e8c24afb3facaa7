"""Published COCO val2017 box AP of this package's Sparse R-CNN configs,
each with its source, for the benchmark's accuracy-vs-latency chart."""
from typing import Dict

_MMDET_ZOO = ('MMDetection 3.3.0 model zoo (configs/sparse_rcnn/README.md '
              'and metafile.yml)')
# Published COCO val2017 box AP of Sparse R-CNN per config of this package.
# ``same_setting``: the published run used this config's backbone and
# number of proposals.
PUBLISHED_AP: Dict[str, dict] = {
    'sparse_rcnn_r50_fpn_1x_coco': dict(
        ap=37.9, source=_MMDET_ZOO, same_setting=True),
    'sparse_rcnn_r50_fpn_3x_coco': dict(
        ap=42.8, source=_MMDET_ZOO, same_setting=True),
    'sparse_rcnn_r50_fpn_300pro_crop_3x_coco': dict(
        ap=45.0, source=_MMDET_ZOO, same_setting=True),
    'sparse_rcnn_r101_fpn_3x_coco': dict(
        ap=44.2, source=_MMDET_ZOO, same_setting=True),
    'sparse_rcnn_r101_fpn_300pro_crop_3x_coco': dict(
        ap=46.2, source=_MMDET_ZOO, same_setting=True),
    'sparse_rcnn_swin_t_fpn_3x_coco': dict(
        ap=47.9, same_setting=False,
        source='Swin Transformer paper (Liu et al., ICCV 2021, '
        'arXiv:2103.14030), Table 2(a), Sparse R-CNN with Swin-T, 3x',
        note='its Sparse R-CNN R-50 baseline reads 44.5, the 300-proposal '
        'level; this config has 100 proposals'),
    'sparse_rcnn_pvtv2_b2_fpn_3x_coco': dict(
        ap=45.7, same_setting=False,
        source='Sparse R-CNN authors\' README (github.com/PeizeSun/'
        'SparseR-CNN), PVTSmall_300pro_3x',
        note='PVT-Small (v1) with 300 proposals; this config is PVTv2-b2 '
        'with 100 (the same README lists PVTv2-b2, 300 proposals + crop, '
        'at 50.1)'),
    'sparse_rcnn_deit_adapter_small_fpn_3x_coco': dict(
        ap=48.1, same_setting=True,
        source='ViT-Adapter paper (Chen et al., ICLR 2023, '
        'arXiv:2205.08534), Sparse R-CNN 3x+MS with ViT-Adapter-S'),
}


def refresh_published_ap(result: dict) -> dict:
    """``result`` with ``published_ap`` set from :data:`PUBLISHED_AP`
    (removed when the config has none)."""
    result = dict(result)
    result.pop('published_ap', None)
    if result.get('config') in PUBLISHED_AP:
        result['published_ap'] = dict(PUBLISHED_AP[result['config']])
    return result


def ap_cell(result: dict) -> str:
    """The published AP of a result as a table cell: ``-`` when there is
    none, ``*`` appended when it was published for another setting."""
    ap = result.get('published_ap')
    if not ap:
        return '-'
    return f"{ap['ap']:.1f}" + ('' if ap.get('same_setting', True) else '*')
