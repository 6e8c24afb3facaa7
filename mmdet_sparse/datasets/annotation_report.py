"""Count what a COCO-format dataset drops, and why, and write it up.

MMDetection's ``CocoDataset`` leaves out, without a word, every annotation
whose box does not overlap the image, has an area or a side below one pixel,
is marked ``ignore``, or whose ``category_id`` is not one of the classes.
:class:`AnnotationReport` counts these per reason while the annotation file
is parsed, keeps the first few examples of each, and turns the counts into
the one summary the dataset logs before training.

The reasons are finer than MMDetection's three tests (a negative width and a
NaN both fail its overlap test, for instance); each dropped annotation gets
the first of :data:`REASONS` that applies to it.
"""
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple


class AnnotationFileError(ValueError):
    """An annotation file that cannot be read or parsed; the message names
    the file (and the image, where one is at fault)."""


class DataCheckError(ValueError):
    """Data that cannot train or test the model meaningfully; the message
    says what to change."""

#: Why an annotation was dropped, in the order they are tested, with the
#: words used in the summary. ``ignored`` is an explicit ``"ignore": true``
#: of the annotation file; it is counted but is not bad data.
REASONS: Dict[str, str] = {
    'ignored': 'marked "ignore"',
    'non_finite': 'NaN or infinite coordinate',
    'negative_size': 'negative width or height',
    'zero_area': 'zero width, height or area',
    'outside_image': 'box outside the image',
    'under_1px': 'width or height below 1 px',
    'unknown_category_id': 'category_id not in the file\'s "categories"',
    'category_not_in_classes': 'category not in metainfo.classes',
    'unexplained': 'dropped for another reason',
}
#: Reasons of images that ``filter_cfg`` leaves out (configured, not bad).
IMAGE_REASONS: Dict[str, str] = {
    'filter_empty_gt': 'no box of the classes (filter_empty_gt=True)',
    'min_size': 'shorter side below filter_cfg.min_size',
}
#: Examples kept per reason (image id, file name, annotation id).
NUM_EXAMPLES = 3
#: Names listed in a message before '... (N more)'.
NUM_NAMES = 10


def mmdet_drops(ann: Dict[str, Any], width: float, height: float,
                class_cat_ids: Set[int]) -> bool:
    """Whether MMDetection's ``CocoDataset`` leaves this annotation out.

    The same tests in the same Python arithmetic (``min``/``max`` with a NaN
    argument, for instance), so that the counts add up to exactly what
    MMDetection drops.
    """
    if ann.get('ignore', False):
        return True
    x, y, w, h = ann['bbox']
    overlap_w = max(0, min(x + w, width) - max(x, 0))
    overlap_h = max(0, min(y + h, height) - max(y, 0))
    return (overlap_w * overlap_h == 0 or ann['area'] <= 0 or w < 1 or h < 1
            or ann['category_id'] not in class_cat_ids)


def drop_reason(ann: Dict[str, Any], width: float, height: float,
                file_cat_ids: Set[int], class_cat_ids: Set[int]) -> str:
    """The first key of :data:`REASONS` that applies to a dropped
    annotation (``'unexplained'`` when none does)."""
    if ann.get('ignore', False):
        return 'ignored'
    x, y, w, h = ann['bbox']
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return 'non_finite'
    if w < 0 or h < 0:
        return 'negative_size'
    if w == 0 or h == 0 or ann['area'] <= 0:
        return 'zero_area'
    if not (x < width and x + w > 0 and y < height and y + h > 0):
        return 'outside_image'
    if w < 1 or h < 1:
        return 'under_1px'
    if ann['category_id'] not in file_cat_ids:
        return 'unknown_category_id'
    if ann['category_id'] not in class_cat_ids:
        return 'category_not_in_classes'
    return 'unexplained'


def _count(num: int, singular: str, plural: str) -> str:
    """``'1 image'`` / ``'2 images'``."""
    return f'{num} {singular if num == 1 else plural}'


def _names(names: Sequence[str]) -> str:
    """At most :data:`NUM_NAMES` names, then how many more."""
    shown = ', '.join(repr(n) for n in names[:NUM_NAMES])
    more = len(names) - NUM_NAMES
    return shown + (f', ... ({more} more)' if more > 0 else '')


@dataclass
class ClassMatch:
    """How ``metainfo.classes`` compare with the file's category names.

    Attributes:
        classes (tuple[str]): ``metainfo.classes``.
        file_names (list[str]): Category names of the file, in file order.
        missing (list[str]): Classes without a category in the file.
        extra (list[str]): File categories that are no class; their boxes
            are dropped.
        order_differs (bool): The matched names are in another order in
            the file than in ``classes``. Labels follow the file's order, so
            ``classes[label]`` would name the wrong category.
    """
    classes: Tuple[str, ...]
    file_names: List[str]
    missing: List[str] = field(default_factory=list)
    extra: List[str] = field(default_factory=list)
    order_differs: bool = False

    @classmethod
    def compare(cls, classes: Sequence[str],
                file_names: Sequence[str]) -> 'ClassMatch':
        """Compare ``classes`` with the file's names (file order)."""
        classes, file_names = tuple(classes), list(file_names)
        wanted, present = set(classes), set(file_names)
        matched_file = [n for n in file_names if n in wanted]
        matched_cfg = [n for n in classes if n in present]
        return cls(classes, file_names,
                   missing=[n for n in classes if n not in present],
                   extra=[n for n in file_names if n not in wanted],
                   order_differs=matched_file != matched_cfg)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.order_differs)

    def describe(self) -> str:
        """What differs, with the likely fix ('' when nothing does)."""
        parts = []
        if self.missing:
            parts.append(f'{len(self.missing)} of metainfo.classes '
                         f'{"has" if len(self.missing) == 1 else "have"} no '
                         f'category in the file: {_names(self.missing)}')
        if self.extra:
            parts.append(f'{_count(len(self.extra), "category", "categories")}'
                         ' of the file not in metainfo.classes (their boxes '
                         f'are dropped): {_names(self.extra)}')
        lower = {n.strip().lower(): n for n in self.extra}
        near = [f'{m!r} ~ {lower[m.strip().lower()]!r}' for m in self.missing
                if m.strip().lower() in lower]
        if near:
            parts.append('names that differ only in case or spaces: ' +
                         ', '.join(near[:NUM_NAMES]))
        if self.order_differs:
            parts.append('the file lists the matched categories in another '
                         'order than metainfo.classes; labels follow the '
                         'file, so class names would be swapped: write '
                         'metainfo.classes in the order of the file\'s '
                         '"categories"')
        if not parts:
            return ''
        return ('; '.join(parts) + f'. The file\'s categories: '
                f'{_names(self.file_names)}')


@dataclass
class AnnotationReport:
    """Counts of what one annotation file loses while being parsed.

    Attributes:
        ann_file (str): The annotation file.
        num_images (int): Images in the file.
        num_annotations (int): Annotations of those images.
        num_kept (int): Annotations that became instances (boxes).
        dropped (Counter): Dropped annotations per key of :data:`REASONS`.
        filtered (Counter): Images left out per key of
            :data:`IMAGE_REASONS`.
        examples (dict): Per reason, the first :data:`NUM_EXAMPLES`
            ``(image id, file name, annotation id)``.
        non_finite_kept (list): ``(image id, file name, annotation id)`` of
            kept boxes with an infinite corner (MMDetection keeps a box with
            an infinite width or height).
        classes (ClassMatch, optional): The class-name comparison.
    """
    ann_file: str
    num_images: int = 0
    num_annotations: int = 0
    num_kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    filtered: Counter = field(default_factory=Counter)
    examples: Dict[str, List[Tuple[Any, str, Any]]] = field(
        default_factory=dict)
    non_finite_kept: List[Tuple[Any, str, Any]] = field(default_factory=list)
    classes: Optional[ClassMatch] = None

    def _example(self, reason: str, img_info: Dict[str, Any],
                 ann_id: Any = None) -> None:
        seen = self.examples.setdefault(reason, [])
        if len(seen) < NUM_EXAMPLES:
            seen.append((img_info.get('img_id', img_info.get('id')),
                         img_info.get('file_name', '?'), ann_id))

    def add_image(self, img_info: Dict[str, Any], anns: List[Dict[str, Any]],
                  instances: List[Dict[str, Any]], file_cat_ids: Set[int],
                  class_cat_ids: Set[int]) -> None:
        """Count one parsed image: its raw annotations and kept instances.

        Only images that lost annotations are looked at one annotation at a
        time, so a clean file costs a few operations per image.
        """
        self.num_images += 1
        self.num_annotations += len(anns)
        self.num_kept += len(instances)
        width, height = img_info['width'], img_info['height']
        if instances and not math.isfinite(
                sum(i['bbox'][2] + i['bbox'][3] for i in instances)):
            kept = (a for a in anns
                    if not mmdet_drops(a, width, height, class_cat_ids))
            for ann, inst in zip(kept, instances):
                if not all(math.isfinite(v) for v in inst['bbox']):
                    self.non_finite_kept.append(
                        (img_info.get('img_id'), img_info.get('file_name'),
                         ann.get('id')))
        if len(instances) == len(anns):
            return
        num_dropped = 0
        for ann in anns:
            if mmdet_drops(ann, width, height, class_cat_ids):
                reason = drop_reason(ann, width, height, file_cat_ids,
                                     class_cat_ids)
                self.dropped[reason] += 1
                self._example(reason, img_info, ann.get('id'))
                num_dropped += 1
        missing = len(anns) - len(instances) - num_dropped
        if missing:  # MMDetection dropped more than its tests explain
            self.dropped['unexplained'] += missing
            self._example('unexplained', img_info)

    def add_filtered(self, reason: str, img_info: Dict[str, Any]) -> None:
        """Count one image that ``filter_cfg`` left out."""
        self.filtered[reason] += 1
        self._example(reason, img_info)

    @property
    def num_bad(self) -> int:
        """Dropped annotations that are bad data (all but ``ignored``)."""
        return sum(n for r, n in self.dropped.items() if r != 'ignored')

    @property
    def needs_warning(self) -> bool:
        """Whether anything in the report is bad data."""
        return bool(self.num_bad or self.non_finite_kept
                    or (self.classes is not None and not self.classes.ok))

    def _lines(self, counts: Counter, words: Dict[str, str]) -> List[str]:
        lines = []
        for reason, text in words.items():
            if not counts.get(reason):
                continue
            shown = ', '.join(
                f'image {i} {name!r}' + ('' if a is None else f' ann {a}')
                for i, name, a in self.examples.get(reason, []))
            lines.append(f'  {counts[reason]:>7} {text} (e.g. {shown})')
        return lines

    def summary(self, num_left: Optional[int] = None) -> str:
        """One multi-line summary of the counts.

        Args:
            num_left (int, optional): Images left after ``filter_cfg``.
        """
        head = (f'{self.ann_file}: kept {self.num_kept} of '
                f'{_count(self.num_annotations, "annotation", "annotations")}'
                f' of {_count(self.num_images, "image", "images")}')
        if num_left is not None:
            head += f'; {num_left} used after filter_cfg'
        lines = [head]
        if self.dropped:
            lines.append('  dropped ' + _count(sum(self.dropped.values()),
                                               'annotation:', 'annotations:'))
            lines += self._lines(self.dropped, REASONS)
        if self.filtered:
            lines.append('  left out ' + _count(sum(self.filtered.values()),
                                                'image', 'images')
                         + ' by filter_cfg:')
            lines += self._lines(self.filtered, IMAGE_REASONS)
        if self.non_finite_kept:
            lines.append(f'  kept {len(self.non_finite_kept)} with an '
                         f'infinite width or height, e.g. (image, file, '
                         f'ann) {self.non_finite_kept[:NUM_EXAMPLES]}')
        if self.classes is not None and not self.classes.ok:
            lines.append('  class names: ' + self.classes.describe())
        return '\n'.join(lines)
