"""Config loading shared by the command-line tools."""
import os.path as osp
from typing import Optional

from mmengine.config import Config


def load_tool_config(path: str,
                     launcher: str = 'none',
                     cfg_options: Optional[dict] = None,
                     work_dir: Optional[str] = None) -> Config:
    """Load a config and apply the options every tool shares.

    Args:
        path (str): Config file.
        launcher (str): Job launcher (``none``, ``pytorch``, ``slurm``,
            ``mpi``).
        cfg_options (dict, optional): ``--cfg-options`` overrides.
        work_dir (str, optional): ``--work-dir``; defaults to the config's,
            else ``./work_dirs/<config name>``.

    Returns:
        Config: With ``launcher``, ``default_scope`` (``mmdet_sparse`` when
        the config has none) and ``work_dir`` set.
    """
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('default_scope') is None:
        cfg.default_scope = 'mmdet_sparse'
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    return cfg
