"""A hook that stops a run before its first iteration when the data's
classes do not fit the model.

The datasets report their own dropped annotations when they are built
(see :class:`mmdet_sparse.datasets.CocoDataset`); what only the Runner can
see is the data and the model together. Without this check a dataset with
more classes than ``num_classes`` fails in the matching cost with
``IndexError: index 46 is out of bounds for dimension 0 with size 3``, and
one with fewer trains a whole epoch before ``CocoMetric.results2json`` fails
with ``IndexError: list index out of range``.

``configs/_base_/default_runtime.py`` adds the hook to ``default_hooks``
(key ``data_check``), which configs extend key by key, so every config gets
it even when it replaces ``custom_hooks``.
"""
import logging
from typing import Any, List, Optional, Sequence, Tuple

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmdet_sparse.datasets.annotation_report import DataCheckError
from mmdet_sparse.registry import HOOKS

NUM_CLASSES_KEY = 'model.roi_head.bbox_head.num_classes'


def dataset_classes(dataset: Any) -> Tuple[int, Sequence[str], str]:
    """Labels a dataset can produce, its class names and its file.

    A COCO-format dataset numbers the ``metainfo.classes`` that the file
    has a category for (``cat_ids``); dataset wrappers are looked through.

    Returns:
        tuple: ``(number of labels, metainfo.classes, annotation file)``.
    """
    inner = dataset
    while not hasattr(inner, 'cat_ids'):
        if hasattr(inner, 'dataset'):
            inner = inner.dataset
        elif getattr(inner, 'datasets', None):
            inner = inner.datasets[0]
        else:
            break
    classes = tuple(dataset.metainfo.get('classes', ()))
    num = len(inner.cat_ids) if hasattr(inner, 'cat_ids') else len(classes)
    return num, classes, str(getattr(inner, 'ann_file', '') or
                             type(inner).__name__)


def model_num_classes(model: Any) -> List[int]:
    """``num_classes`` of each box head of ``model`` (``[]`` if none)."""
    if is_model_wrapper(model):
        model = model.module
    heads = getattr(getattr(model, 'roi_head', None), 'bbox_head', None)
    if heads is None:
        heads = getattr(model, 'bbox_head', None)
    if heads is None:
        return []
    heads = heads if hasattr(heads, '__iter__') else [heads]
    return [h.num_classes for h in heads if hasattr(h, 'num_classes')]


def _labels(first: int, end: int) -> str:
    """``'label 3'`` or ``'labels 3..4'`` for the range ``[first, end)``."""
    return (f'label {first}' if end - first == 1 else
            f'labels {first}..{end - 1}')


def _where_to_set(cfg: Any, num: int) -> str:
    """The config key to change, for one dict or per-stage dicts."""
    heads = None
    try:
        heads = cfg['model']['roi_head']['bbox_head']
    except (KeyError, TypeError):
        return f'{NUM_CLASSES_KEY}={num} (or the bbox_head of your model)'
    if isinstance(heads, (list, tuple)):
        return (f'{NUM_CLASSES_KEY}={num} in each of the {len(heads)} '
                f'per-stage dicts of model.roi_head.bbox_head (from the '
                f'command line: --cfg-options '
                + ' '.join(f'model.roi_head.bbox_head.{i}.num_classes={num}'
                           for i in range(len(heads))) + ')')
    return (f'{NUM_CLASSES_KEY}={num} (from the command line: '
            f'--cfg-options {NUM_CLASSES_KEY}={num})')


def check_classes(dataset: Any, model: Any, split: str,
                  cfg: Optional[Any] = None) -> None:
    """Raise :class:`DataCheckError` unless the dataset's labels and the
    model's classes are the same number.

    Args:
        dataset: The dataset of a dataloader.
        model: The (possibly wrapped) detector.
        split (str): ``'train'``, ``'val'`` or ``'test'``, for the message.
        cfg (Config, optional): The run's config, to name the key to set.
    """
    model_nums = model_num_classes(model)
    if not model_nums:
        return
    num, classes, source = dataset_classes(dataset)
    for stage, model_num in enumerate(model_nums):
        if model_num == num:
            continue
        names = (f'metainfo.classes has {len(classes)} names'
                 + (f', {num} of them in the file' if num != len(classes)
                    else ''))
        stage_txt = (f' (stage {stage})' if len(set(model_nums)) > 1
                     else '')
        if num > model_num and split == 'train':
            effect = (f'{_labels(model_num, num)} of the data have no '
                      'output, and training fails in the matching cost with '
                      'an IndexError')
        elif num > model_num:
            effect = (f'{_labels(model_num, num)} of the data can never be '
                      'predicted (their AP is 0)')
        else:
            effect = (f'predictions of {_labels(num, model_num)} name no '
                      'class of the data, and evaluation fails in '
                      'CocoMetric.results2json with an IndexError after the '
                      'epoch')
        raise DataCheckError(
            f'The {split} data has {num} classes ({source}: {names}) but the '
            f'model predicts {model_num}{stage_txt}: {effect}. Set '
            f'{_where_to_set(cfg, num)}, or make '
            f'{split}_dataloader.dataset.metainfo.classes list the '
            f'{model_num} classes of the model.')


@HOOKS.register_module()
class DataCheckHook(Hook):
    """Check each split's classes against the model before it runs.

    ``before_train`` checks the training data and, when validation is
    configured, the validation data (so a mismatch does not wait for the
    first validation); ``before_val`` and ``before_test`` check their own
    data. Each dataset is checked once.

    Args:
        strict (bool): Raise :class:`DataCheckError` on a mismatch; False
            only logs it as a warning. mmengine cannot remove an added
            default hook (``default_hooks.data_check=None`` fails its
            assertion), so ``--cfg-options default_hooks.data_check.strict=
            False`` is the way to run anyway. Defaults to True.
    """

    priority = 'VERY_HIGH'

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        self._checked: set = set()

    def _check(self, runner, split: str, dataloader: Any) -> None:
        dataset = getattr(dataloader, 'dataset', None)
        if dataset is None or id(dataset) in self._checked:
            return
        self._checked.add(id(dataset))
        try:
            check_classes(dataset, runner.model, split, runner.cfg)
        except DataCheckError as exc:
            if self.strict:
                raise
            print_log(f'{exc} (default_hooks.data_check.strict=False: '
                      'going on)', logger='current', level=logging.WARNING)

    def before_train(self, runner) -> None:
        self._check(runner, 'train', runner.train_dataloader)
        val_loop = runner.val_loop
        if val_loop is not None:
            self._check(runner, 'val', val_loop.dataloader)

    def before_val(self, runner) -> None:
        self._check(runner, 'val', runner.val_loop.dataloader)

    def before_test(self, runner) -> None:
        self._check(runner, 'test', runner.test_loop.dataloader)
