"""MMDetection's ``CocoDataset`` that says what it drops and why.

Registered as ``CocoDataset`` in the ``mmdet_sparse`` scope, so every config
of this package (and any config with ``default_scope='mmdet_sparse'``) gets
it; MMDetection's class stays reachable as ``type='mmdet.CocoDataset'``.

What is kept is exactly what MMDetection keeps (same boxes, labels, images,
order). In addition, before the first iteration:

* one summary per dataset goes to mmengine's logger, as a warning when
  annotations were dropped as bad data (counts per reason, the first image
  ids and files of each) or when ``metainfo.classes`` and the file's
  category names differ;
* an unreadable annotation file, or an annotation that MMDetection cannot
  parse, raises :class:`AnnotationFileError` naming the file (and image),
  chained to the original exception;
* data that cannot train raises :class:`DataCheckError` with the remedy: a
  file without images, every image left out by ``filter_cfg``, no box left
  to train on, or a kept box with an infinite side.
"""
import logging
import os.path as osp
from typing import List, Optional, Set, Tuple, Union

from mmdet.datasets import CocoDataset as MMDetCocoDataset
from mmengine.logging import print_log

from mmdet_sparse.registry import DATASETS
from .annotation_report import (AnnotationFileError, AnnotationReport,
                                ClassMatch, DataCheckError)

_REMEDY_NO_BOX = (
    'Check that metainfo.classes (in train_dataloader.dataset) names the '
    'file\'s categories, that "category_id" refers to an id of '
    '"categories", and that "bbox" is [x, y, width, height] in pixels of '
    'the image.')


@DATASETS.register_module(name='CocoDataset')
class CocoDataset(MMDetCocoDataset):
    """COCO-format detection dataset with a report of dropped data.

    Arguments as MMDetection's ``CocoDataset``. After loading,
    :attr:`report` holds the :class:`AnnotationReport` of the file.
    """

    report: Optional[AnnotationReport] = None
    _cat_sets: Optional[Tuple[Set[int], Set[int]]] = None

    def load_data_list(self) -> List[dict]:
        """MMDetection's loading, counting what it drops; errors name
        the annotation file."""
        self.report = AnnotationReport(str(self.ann_file))
        self._cat_sets = None
        try:
            data_list = super().load_data_list()
        except (AnnotationFileError, OSError):
            raise  # already name the file
        except Exception as exc:
            raise AnnotationFileError(
                f'Cannot read annotation file {self.ann_file}: '
                f'{type(exc).__name__}: {exc}. Is it complete, valid COCO '
                'JSON? Re-download or re-export it.') from exc
        finally:
            self._cat_sets = None
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> Union[dict, List[dict]]:
        """MMDetection's parsing of one image, then counting its drops."""
        img_info = raw_data_info['raw_img_info']
        try:
            data_info = super().parse_data_info(raw_data_info)
        except Exception as exc:
            raise AnnotationFileError(
                f'{self.ann_file}: cannot parse the annotations of image '
                f'{img_info.get("img_id")} '
                f'({img_info.get("file_name", "?")!r}): '
                f'{type(exc).__name__}: {exc}. Each image needs "id", '
                '"file_name", "width" and "height"; each annotation "bbox" '
                '[x, y, width, height], "area" and "category_id".') from exc
        if self.report is None or not isinstance(data_info, dict):
            return data_info
        if self._cat_sets is None:
            self._start_counting()
        file_cat_ids, class_cat_ids = self._cat_sets
        self.report.add_image(img_info, raw_data_info['raw_ann_info'],
                              data_info['instances'], file_cat_ids,
                              class_cat_ids)
        return data_info

    def _start_counting(self) -> None:
        """Compare the classes with the file's categories (needs
        ``self.coco``, which exists only while the file is parsed)."""
        cats = self.coco.cats
        self.report.classes = ClassMatch.compare(
            self.metainfo['classes'], [c['name'] for c in cats.values()])
        self._cat_sets = (set(cats), set(self.cat_ids))

    def filter_data(self) -> List[dict]:
        """MMDetection's ``filter_cfg``; then the summary, and an error
        where training cannot be meaningful."""
        before = self.data_list
        kept = super().filter_data()
        report = self.report
        if report is None:
            return kept
        if len(kept) < len(before):
            kept_ids = {id(info) for info in kept}
            min_size = (self.filter_cfg or {}).get('min_size', 0)
            for info in before:
                if id(info) not in kept_ids:
                    small = min(info['width'], info['height']) < min_size
                    report.add_filtered(
                        'min_size' if small else 'filter_empty_gt',
                        dict(img_id=info['img_id'],
                             file_name=osp.basename(info['img_path'])))
        self._check(report, before, kept)
        return kept

    def _check(self, report: AnnotationReport, before: List[dict],
               kept: List[dict]) -> None:
        """Log the summary; raise :class:`DataCheckError` for data that
        cannot train."""
        summary = report.summary(num_left=len(kept))
        if not before:
            raise DataCheckError(
                f'{self.ann_file} holds no image ("images" is empty or '
                'missing): nothing to train or test on. Check ann_file and '
                'data_root.')
        if not kept:
            raise DataCheckError(
                f'{self.ann_file}: filter_cfg={self.filter_cfg} left out all '
                f'{len(before)} image(s), nothing to train on.\n{summary}\n'
                'filter_empty_gt=True keeps only images with a box of '
                'metainfo.classes: fix the annotations or the class names, '
                'or set train_dataloader.dataset.filter_cfg.filter_empty_gt'
                '=False (and lower min_size if it applies).')
        usable = any(inst.get('ignore_flag', 0) == 0 for info in kept
                     for inst in info['instances'])
        if not self.test_mode:
            if not usable:
                raise DataCheckError(
                    f'{self.ann_file}: no box left to train on (the model '
                    f'would learn background only).\n{summary}\n'
                    + _REMEDY_NO_BOX)
            if report.non_finite_kept:
                raise DataCheckError(
                    f'{self.ann_file}: boxes with an infinite width or '
                    'height would make the losses infinite.\n'
                    f'{summary}\nFix or remove these annotations.')
        level = logging.WARNING if (report.needs_warning or (
            not usable and report.num_annotations)) else logging.INFO
        print_log(summary, logger='current', level=level)
