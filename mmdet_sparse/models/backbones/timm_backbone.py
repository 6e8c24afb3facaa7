"""Any timm model with ``features_only=True`` as a detector backbone.

Weights are never fetched at run time by default: ``pretrained`` is False,
and pretrained weights come from a local file, either ``checkpoint_path``
(loaded when the model is built) or ``init_cfg=dict(type='Pretrained',
checkpoint=PATH)`` (loaded by ``init_weights``). Both go through timm's own
pretrained-weight loader (``pretrained_cfg_overlay=dict(file=PATH)``), which
adapts the classifier-trained state dict to the feature extractor; the
missing/unexpected keys it finds (besides the classifier, which the feature
extractor does not have) are logged as warnings.
``pretrained=True`` without a file asks timm to download the weights, which
needs network access.
"""
import logging
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor

from mmdet_sparse.registry import MODELS


@MODELS.register_module()
class TimmBackbone(BaseModule):
    """Feature pyramid from ``timm.create_model(..., features_only=True)``.

    Args:
        model_name (str): timm model name, e.g. ``'convnext_tiny'``,
            ``'resnet50'``.
        out_indices (Sequence[int], optional): timm feature levels to return;
            None for timm's default (all levels). E.g. ``(1, 2, 3, 4)`` for
            ResNets (strides 4-32), ``(0, 1, 2, 3)`` for ConvNeXt.
            Defaults to None.
        pretrained (bool): Let timm load its default pretrained weights
            (downloads; needs network). Defaults to False.
        checkpoint_path (str, optional): Local weights file loaded when the
            model is built. Defaults to None.
        norm_eval (bool): Keep BatchNorm layers in eval mode (frozen running
            statistics) during training. Defaults to False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH)``
            loads a local weights file in :meth:`init_weights`.
            Defaults to None.
        **kwargs: Passed on to ``timm.create_model`` (``drop_path_rate``,
            ``in_chans``, ...).

    Attributes:
        out_channels (tuple[int]): Channels of each returned map.
        strides (tuple[int]): Stride of each returned map.
    """

    def __init__(self,
                 model_name: str,
                 out_indices: Optional[Sequence[int]] = None,
                 pretrained: bool = False,
                 checkpoint_path: Optional[str] = None,
                 norm_eval: bool = False,
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(init_cfg=init_cfg)
        self.model_name = model_name
        self.norm_eval = norm_eval
        # no classifier: it is unused by the feature extractor
        self._timm_kwargs = dict(dict(num_classes=0), **kwargs,
                                 features_only=True)
        if out_indices is not None:
            self._timm_kwargs['out_indices'] = tuple(out_indices)
        self.timm_model = self._create(pretrained, checkpoint_path)
        info = self.timm_model.feature_info
        self.out_channels = tuple(info.channels())
        self.strides = tuple(info.reduction())

    def _create(self, pretrained: bool, file: Optional[str]) -> nn.Module:
        """Build the timm feature model, loading ``file`` if given."""
        import timm  # optional dependency, needed only by this class
        kwargs = dict(self._timm_kwargs)
        if not file:
            return timm.create_model(
                self.model_name, pretrained=pretrained, **kwargs)
        kwargs['pretrained_cfg_overlay'] = dict(file=file)
        with _key_report(file):
            return timm.create_model(
                self.model_name, pretrained=True, **kwargs)

    def init_weights(self) -> None:
        """Load ``init_cfg``'s local checkpoint (if any); timm models are
        otherwise initialised when built."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            loaded = self._create(True, cfg['checkpoint'])
            self.timm_model.load_state_dict(loaded.state_dict())
        self._is_init = True

    def train(self, mode: bool = True) -> 'TimmBackbone':
        """Set train/eval mode, keeping BatchNorm in eval if ``norm_eval``."""
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Image (B, C, H, W) -> maps (B, out_channels[i], H/s_i, W/s_i)."""
        return tuple(self.timm_model(x))


class _KeyMessages(logging.Handler):
    """Collects timm's 'Missing keys'/'Unexpected keys' load messages."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith(('Missing keys', 'Unexpected keys')):
            self.messages.append(msg)


@contextmanager
def _key_report(file: str) -> Iterator[None]:
    """Log, as warnings, the key mismatches timm finds loading ``file``."""
    logger = logging.getLogger('timm')
    handler, level = _KeyMessages(), logger.level
    logger.addHandler(handler)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    for msg in handler.messages:
        print_log(f'TimmBackbone loading {file}: {msg}', logger='current',
                  level=logging.WARNING)
