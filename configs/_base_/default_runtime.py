# Runtime shared by every config: this package's scope and imports, hooks,
# logging, visualisation and distributed settings.
default_scope = 'mmdet_sparse'
custom_imports = dict(imports=['mmdet_sparse'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # mmengine's CheckpointHook with crash-safe writes (same arguments).
    checkpoint=dict(type='AtomicCheckpointHook', interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'),
    # Stops a run before its first iteration when the data's classes do
    # not fit the model's num_classes. A default hook (not a custom one), so
    # configs that replace custom_hooks keep it.
    data_check=dict(type='DataCheckHook'))

# Resumed runs continue the random streams of the run they resume.
custom_hooks = [dict(type='RNGStateHook')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
