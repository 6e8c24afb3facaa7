"""High-level APIs of ``mmdet_sparse``: inference on images and videos,
training followed by a test of the saved weights, pictures of the
stages (the paper's Figure 5)."""
from mmdet_sparse.engine import (CPUBFloat16OptimWrapper,
                                 allow_runner_checkpoints, amp_for_device,
                                 enable_amp,
                                 runner_checkpoint_globals,
                                 setup_cpu_distributed)
from .inference import (COCO_CATEGORY_IDS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS,
                        InferenceInputError, InferenceInputs,
                        build_inferencer, coco_category_ids, collect_inputs,
                        default_device, det_sample_to_coco, draw,
                        incomplete_video_message, predict, read_image,
                        run_inference)
from .train_test import train_then_test
from .vis_stages import visualize_stages

__all__ = [
    'allow_runner_checkpoints', 'runner_checkpoint_globals',
    'CPUBFloat16OptimWrapper', 'amp_for_device', 'enable_amp',
    'setup_cpu_distributed', 'COCO_CATEGORY_IDS', 'IMAGE_EXTENSIONS',
    'VIDEO_EXTENSIONS',
    'InferenceInputError', 'InferenceInputs', 'build_inferencer',
    'coco_category_ids', 'collect_inputs', 'default_device',
    'det_sample_to_coco', 'draw', 'incomplete_video_message', 'predict',
    'read_image', 'run_inference', 'train_then_test', 'visualize_stages'
]
