"""Per-stage configs of the cascade heads."""
from typing import Any, List


def per_stage(cfg: Any, num_stages: int, name: str) -> List[Any]:
    """A list of ``num_stages`` configs from one config (shared by every
    stage) or a list of one per stage.

    Args:
        cfg: One config, or a list or tuple of ``num_stages`` configs.
        num_stages (int): Stages of the head.
        name (str): The config's name, for the error message.

    Raises:
        ValueError: A list whose length is not ``num_stages``.
    """
    if isinstance(cfg, (list, tuple)):
        if len(cfg) != num_stages:
            raise ValueError(f'{name} has {len(cfg)} entries for '
                             f'{num_stages} stages')
        return list(cfg)
    return [cfg] * num_stages
