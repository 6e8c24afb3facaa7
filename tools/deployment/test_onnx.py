"""Evaluate an exported Sparse R-CNN ONNX model on a config's test set.

Example::

    python tools/deployment/test_onnx.py configs/CONFIG.py model.onnx
    python tools/deployment/test_onnx.py configs/CONFIG.py model.onnx \
        --backend openvino [--precision bf16]
    python tools/deployment/test_onnx.py configs/CONFIG.py model_int8.onnx

Every test image goes through the runtime, ONNX Runtime by default
(``mmdet_sparse.deploy.OnnxDetector``: the preprocessing stored in the
model, boxes rescaled to the original image) and the predictions are scored
with the config's ``test_evaluator`` (MMDetection's ``CocoMetric``), so the
numbers compare with ``tools/test.py`` on the same config.
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
import time
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line arguments."""
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='COCO evaluation of an ONNX Sparse R-CNN')
    parser.add_argument('config', help='config with the test set and '
                        'test_evaluator')
    parser.add_argument('model', help='the .onnx file')
    parser.add_argument('--threads', type=int, default=None,
                        help='intra-op threads of the backend')
    parser.add_argument('--backend', default='onnxruntime',
                        choices=['onnxruntime', 'openvino'])
    parser.add_argument('--precision', default='fp32',
                        choices=['fp32', 'bf16'],
                        help='bf16: OpenVINO on a CPU with bfloat16 '
                        'instructions (default: fp32)')
    parser.add_argument('--out', default=None,
                        help='write the metrics to this JSON file')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. test_dataloader.dataset.'
        'data_root=data/my/')
    return parser.parse_args(argv)


def evaluate(cfg, model_path: str, threads=None, log=print,
             backend: str = 'onnxruntime',
             precision: str = 'fp32') -> dict:
    """Run ``model_path`` on the test set of ``cfg``; return the metrics.

    Args:
        cfg (Config): Config with ``test_dataloader.dataset`` and
            ``test_evaluator``.
        model_path (str): The ``.onnx`` file.
        threads (int, optional): Intra-op threads of the backend.
        log (callable): Progress output.
        backend (str): ``'onnxruntime'`` or ``'openvino'``.
        precision (str): ``'fp32'`` or ``'bf16'`` (OpenVINO).
    """
    import torch
    from mmengine.evaluator import Evaluator
    from mmengine.registry import DefaultScope

    import mmdet_sparse  # noqa: F401
    from mmdet_sparse.deploy import OnnxDetector
    from mmdet_sparse.registry import DATASETS
    detector = OnnxDetector(model_path, threads, backend=backend,
                            precision=precision)
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmdet_sparse')):
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        evaluator = Evaluator(cfg.test_evaluator)
    classes = tuple(dataset.metainfo['classes'])
    if tuple(detector.classes) != classes:
        raise ValueError(f'{model_path} predicts classes {detector.classes}'
                         f', the test set of {cfg.filename} has {classes}')
    evaluator.dataset_meta = dataset.metainfo
    start = time.perf_counter()
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        out = detector(info['img_path'])
        pred = dict(bboxes=torch.from_numpy(out['bboxes']),
                    scores=torch.from_numpy(out['scores']),
                    labels=torch.from_numpy(out['labels']))
        evaluator.process(data_samples=[dict(
            img_id=info['img_id'], ori_shape=out['ori_shape'],
            pred_instances=pred)])
        if (index + 1) % 50 == 0 or index + 1 == len(dataset):
            log(f'[{index + 1}/{len(dataset)}] '
                f'{(time.perf_counter() - start) / (index + 1):.3f} s/img')
    return evaluator.evaluate(len(dataset))


def main(argv=None) -> int:
    """Entry point."""
    args = parse_args(argv)
    warnings.filterwarnings('ignore', category=UserWarning)
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    try:
        metrics = evaluate(cfg, args.model, args.threads,
                           backend=args.backend, precision=args.precision)
    except ValueError as exc:  # a refused backend / precision / model
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=1))
    if args.out:
        out_dir = osp.dirname(osp.abspath(args.out))
        os.makedirs(out_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix='.json.tmp', dir=out_dir)
        with os.fdopen(fd, 'w') as f:
            json.dump(metrics, f, indent=1)
        os.replace(tmp, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
