"""Shared, expensive fixtures of the deployment tests, made once per
session: a tiny shapes image set, the demo model trained for a few
iterations on it, its checkpoint, and the checkpoint's ``--dynamic`` export
through ``tools/deployment/export_onnx.py``."""
import pytest
import torch
from support.deploy_helpers import demo_config, load_tool, train_briefly


@pytest.fixture(scope='session')
def shapes(tmp_path_factory):
    """4 train and 3 val images, 96x128 (resized to 192x256 by the demo's
    test pipeline)."""
    from mmdet_sparse.datasets.synthetic_shapes import \
        generate_shapes_dataset
    root = tmp_path_factory.mktemp('shapes')
    info = generate_shapes_dataset(root, num_train=4, num_val=3,
                                   img_size=(96, 128), seed=3)
    return dict(root=str(root), info=info, cfg=demo_config(str(root)))


@pytest.fixture(scope='session')
def trained(shapes, tmp_path_factory):
    """The briefly trained model, its checkpoint and config files."""
    folder = tmp_path_factory.mktemp('trained')
    model = train_briefly(shapes['cfg'])
    ckpt = str(folder / 'trained.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    cfg_file = str(folder / 'demo_tiny.py')
    shapes['cfg'].dump(cfg_file)
    return dict(model=model, checkpoint=ckpt, config=cfg_file)


@pytest.fixture(scope='session')
def dynamic_onnx(trained, tmp_path_factory):
    """``export_onnx.py CONFIG CKPT --dynamic`` of the trained checkpoint
    (example input 128x160)."""
    from mmdet_sparse.deploy import OnnxDetector
    path = str(tmp_path_factory.mktemp('onnx') / 'demo_dynamic.onnx')
    exporter = load_tool('deployment', 'export_onnx.py')
    assert exporter.main([trained['config'], trained['checkpoint'], '--out',
                          path, '--img-size', '128', '160',
                          '--dynamic']) == 0
    return dict(path=path, meta=OnnxDetector(path).meta)
