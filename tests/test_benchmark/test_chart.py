"""Tests of ``mmdet_sparse/benchmark/chart.py``."""
import tempfile
from unittest import TestCase

from support.benchmark_fakes import fake_result

from mmdet_sparse.benchmark import PUBLISHED_AP, plot


class TestChart(TestCase):

    def test_chart_labels_do_not_overlap(self):
        # eight configs crowded together, as on a noisy CPU
        names = sorted(PUBLISHED_AP)
        results = [fake_result(name, 106_000_000 + i * 400_000, 126.0 + i,
                               500.0 + 3 * i) for i, name in enumerate(names)]
        results.append(fake_result('sparse_rcnn_timm_resnet50_fpn_3x_coco',
                                   106_300_000, 127.0, 501.0))
        with tempfile.TemporaryDirectory() as tmp:
            drawn = plot(results, f'{tmp}/chart.png')
        assert set(drawn) == {'latency vs params (M)', 'latency vs GFLOPs',
                              'accuracy vs latency'}
        assert len(drawn['accuracy vs latency']) == 8  # configs with an AP
        assert len(drawn['latency vs GFLOPs']) == 9
        for labels in drawn.values():
            # the labels as rendered, not as planned, are pairwise disjoint
            for i, (text_a, a) in enumerate(labels):
                for text_b, b in labels[i + 1:]:
                    assert not a.overlaps(b), (text_a, text_b)
        labels = [text for text, _ in drawn['accuracy vs latency']]
        assert 'pvtv2_b2_fpn_3x_coco*' in labels
        assert 'r50_fpn_3x_coco' in labels

    def test_no_published_ap(self):
        with tempfile.TemporaryDirectory() as tmp:
            drawn = plot([fake_result('model_a', 10, 1.0, 5.0),
                          dict(config='model_b', error='boom')],
                         f'{tmp}/chart.png')
        assert drawn['accuracy vs latency'] == []
        assert [t for t, _ in drawn['latency vs params (M)']] == ['model_a']
