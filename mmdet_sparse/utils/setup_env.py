"""Registration and default-scope set-up."""
import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register MMDetection's and this package's modules in their registries.

    Args:
        init_default_scope (bool): Also make ``mmdet_sparse`` the current
            default scope, so that a config without ``default_scope`` builds
            this package's heads. Defaults to True.
    """
    from mmdet.utils import register_all_modules as register_mmdet_modules
    register_mmdet_modules(init_default_scope=False)

    import mmdet_sparse.datasets  # noqa: F401
    import mmdet_sparse.engine  # noqa: F401
    import mmdet_sparse.models  # noqa: F401

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is None or not DefaultScope.check_instance_created(
            'mmdet_sparse'):
        DefaultScope.get_instance('mmdet_sparse', scope_name='mmdet_sparse')
        return
    if current.scope_name != 'mmdet_sparse':
        warnings.warn(f'The current default scope "{current.scope_name}" is '
                      'not "mmdet_sparse"; `register_all_modules` makes a new '
                      'default scope "mmdet_sparse" current.')
        DefaultScope.get_instance(
            f'mmdet_sparse-{datetime.datetime.now()}',
            scope_name='mmdet_sparse')
