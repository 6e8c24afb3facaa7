"""Config adjustments that let the train/test tools run without CUDA.

* Mixed precision: mmengine's ``AmpOptimWrapper`` refuses to start without an
  accelerator, so :func:`enable_amp` selects float16 + ``AmpOptimWrapper`` on
  CUDA and bfloat16 autocast (:class:`CPUBFloat16OptimWrapper`, no loss
  scaler) on the CPU.
* Distribution: with ``--launcher pytorch`` mmengine's ``init_dist`` calls
  ``torch.cuda.set_device`` and its default DDP wrapper passes GPU
  ``device_ids``; :func:`setup_cpu_distributed` initialises the process group
  itself (gloo) and wraps the model without ``device_ids``.
"""
import datetime
import os
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Set, Union

import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from mmdet_sparse.registry import OPTIM_WRAPPERS

CPU_AMP_WRAPPER = 'CPUBFloat16OptimWrapper'
DDP_TYPES = ('MMDistributedDataParallel', 'DistributedDataParallel')


def _float32(value: Any) -> Any:
    """``value`` with its floating-point tensors (also nested) as float32."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.float()
    if isinstance(value, (list, tuple)):
        return type(value)(_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: _float32(v) for k, v in value.items()}
    return value


def needs_float32(module: torch.nn.Module) -> bool:
    """Modules that must see float32 inputs under CPU bfloat16 autocast.

    mmcv's compiled CPU kernels (``RoIAlign``, ...) have no bfloat16 version,
    and an RoI extractor casts the box coordinates to its features' dtype,
    which in bfloat16 would round them to several pixels.
    """
    from mmdet.models.roi_heads.roi_extractors import BaseRoIExtractor
    return isinstance(module, BaseRoIExtractor) or \
        type(module).__module__.startswith('mmcv.ops.')


def _run_in_float32(module: torch.nn.Module) -> None:
    """Run ``module``'s forward on float32 inputs with CPU autocast off.

    Casting the inputs alone is not enough: inside the forward autocast
    would cast again (mmcv's deformable convolution computes its offsets
    with a ``Conv2d`` and casts its input to their dtype). Hooks rather than
    a wrapped ``forward``, so that a deep copy of the model (EMA) runs its
    own parameters.
    """
    active = []

    def enter(_, args, kwargs):
        off = torch.autocast('cpu', enabled=False)
        off.__enter__()
        active.append(off)
        return _float32(args), _float32(kwargs)

    def leave(*_):
        active.pop().__exit__(None, None, None)

    module.register_forward_pre_hook(enter, with_kwargs=True)
    module.register_forward_hook(leave)


@OPTIM_WRAPPERS.register_module(name=CPU_AMP_WRAPPER)
class CPUBFloat16OptimWrapper(OptimWrapper):
    """Optimizer wrapper that runs the forward pass under CPU autocast.

    bfloat16 keeps float32's exponent range, so no loss scaling is needed:
    ``backward``/``step`` are the plain ones. Modules for which
    :func:`needs_float32` holds get their inputs cast to float32.

    Args:
        dtype (str | torch.dtype): Autocast dtype; CPU autocast only
            supports ``'bfloat16'``.
        **kwargs: Passed to :class:`OptimWrapper`.
    """

    def __init__(self,
                 dtype: Union[str, torch.dtype] = 'bfloat16',
                 **kwargs) -> None:
        super().__init__(**kwargs)
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if dtype != torch.bfloat16:
            raise ValueError(f'CPU autocast supports bfloat16 only, got '
                             f'{dtype}')
        self.cast_dtype = dtype
        self._hooked: Set[int] = set()

    def _add_float32_hooks(self, model: torch.nn.Module) -> None:
        """Once per model, check that it is on the CPU and give
        :func:`needs_float32` modules float32.

        Raises:
            RuntimeError: The model has parameters on another device, where
                CPU autocast does nothing and training would silently run
                in float32.
        """
        if id(model) in self._hooked:
            return
        devices = {p.device.type for p in model.parameters()} - {'cpu'}
        if devices:
            raise RuntimeError(
                f'{CPU_AMP_WRAPPER} autocasts CPU operations only, but the '
                f'model is on {sorted(devices)}, where it would train in '
                "float32 without a word. Use optim_wrapper.type="
                "'AmpOptimWrapper' (float16 with loss scaling; "
                'tools/train.py --amp selects it on CUDA).')
        self._hooked.add(id(model))
        for module in model.modules():
            if needs_float32(module):
                _run_in_float32(module)

    @contextmanager
    def optim_context(self, model: torch.nn.Module) -> Iterator[None]:
        """Gradient-accumulation context plus bfloat16 CPU autocast."""
        self._add_float32_hooks(model)
        with super().optim_context(model), torch.autocast(
                device_type='cpu', dtype=self.cast_dtype):
            yield


def enable_amp(cfg: Config) -> str:
    """Switch ``cfg.optim_wrapper`` to mixed precision; returns a summary.

    CUDA: ``AmpOptimWrapper`` with dynamic loss scaling (float16 unless the
    config sets ``dtype``). No CUDA: :class:`CPUBFloat16OptimWrapper` with
    ``dtype='bfloat16'`` and no loss scaler.
    """
    if torch.cuda.is_available():
        if cfg.optim_wrapper.get('type') == CPU_AMP_WRAPPER:
            # The CPU wrapper's bfloat16 is a CPU choice; CUDA AMP defaults
            # to float16 (bfloat16 needs Ampere or newer).
            cfg.optim_wrapper.pop('dtype', None)
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
        dtype = cfg.optim_wrapper.get('dtype') or 'float16'
        return f'AMP: {dtype} autocast on CUDA, dynamic loss scaling'
    cfg.optim_wrapper.type = CPU_AMP_WRAPPER
    cfg.optim_wrapper.dtype = 'bfloat16'
    cfg.optim_wrapper.pop('loss_scale', None)
    return 'AMP: no CUDA device, bfloat16 autocast on CPU, no loss scaling'


def amp_for_device(cfg: Config) -> Optional[str]:
    """Switch a config's mixed precision to the one this machine runs:
    ``AmpOptimWrapper`` without CUDA becomes :class:`CPUBFloat16OptimWrapper`
    and that wrapper with CUDA becomes ``AmpOptimWrapper`` (see
    :func:`enable_amp`). Returns the summary, or None when nothing changed.
    """
    wrapper = cfg.optim_wrapper.get('type')
    cuda = torch.cuda.is_available()
    if (wrapper == 'AmpOptimWrapper' and not cuda) or \
            (wrapper == CPU_AMP_WRAPPER and cuda):
        return enable_amp(cfg)
    return None


def setup_cpu_distributed(cfg: Config) -> None:
    """Prepare a ``--launcher pytorch`` run on a machine without CUDA.

    Initialises the process group with the config's backend, which must be
    gloo, and makes the Runner wrap the model in DDP without ``device_ids``.
    Does nothing when CUDA is available or the group already exists.
    """
    if torch.cuda.is_available() or torch.distributed.is_initialized():
        return
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    backend = dist_cfg.pop('backend', 'nccl')
    if backend != 'gloo':
        raise RuntimeError(
            f'No CUDA device: distributed runs need the gloo backend, but '
            f'env_cfg.dist_cfg.backend is {backend!r}. Add '
            f'--cfg-options env_cfg.dist_cfg.backend=gloo')
    if isinstance(dist_cfg.get('timeout'), (int, float)):
        dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
    torch.distributed.init_process_group(
        backend='gloo',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **dist_cfg)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    if wrapper.get('type', DDP_TYPES[0]) in DDP_TYPES:
        wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
