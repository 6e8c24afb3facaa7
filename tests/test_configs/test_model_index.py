"""The model index (``model-index.yml``, ``configs/**/metafile.yml``): its
configs, its published numbers against the README, its weights against
MMDetection's metafiles, and what OpenMMLab's ``mim`` reads from a package
built by ``setup.py`` (``mmdet_sparse/.mim/``). Offline: downloads and
training runs are replaced by recorders."""
import glob
import importlib
import importlib.util
import os
import os.path as osp
import re
import sys
import tempfile
import unittest
from typing import Dict, Tuple
from unittest import mock

import mmdet
import yaml
from mmengine.config import Config
from modelindex.load_model_index import load

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MMDET_CONFIGS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')
#: Our model name -> MMDetection 3.x's name of the same model.
MMDET_NAMES = {
    'sparse_rcnn_r50_fpn_1x_coco': 'sparse-rcnn_r50_fpn_1x_coco',
    'sparse_rcnn_r50_fpn_3x_coco': 'sparse-rcnn_r50_fpn_ms-480-800-3x_coco',
    'sparse_rcnn_r50_fpn_300pro_crop_3x_coco':
    'sparse-rcnn_r50_fpn_300-proposals_crop-ms-480-800-3x_coco',
    'sparse_rcnn_r101_fpn_3x_coco': 'sparse-rcnn_r101_fpn_ms-480-800-3x_coco',
    'sparse_rcnn_r101_fpn_300pro_crop_3x_coco':
    'sparse-rcnn_r101_fpn_300-proposals_crop-ms-480-800-3x_coco',
    **{
        name: name
        for name in ('queryinst_r50_fpn_1x_coco',
                     'queryinst_r50_fpn_ms-480-800-3x_coco',
                     'queryinst_r50_fpn_300-proposals_crop-ms-480-800-3x_coco',
                     'queryinst_r101_fpn_ms-480-800-3x_coco',
                     'queryinst_r101_fpn_300-proposals_crop-ms-480-800-3x_coco')
    },
}
#: Models with published AP but no file that loads into the config.
NO_WEIGHTS = {
    'sparse_rcnn_x101_32x4d_fpn_300pro_crop_3x_coco',
    'sparse_rcnn_x101_32x4d_dcn_fpn_300pro_crop_3x_coco',
    'sparse_rcnn_x101_32x4d_dcn_fpn_300pro_crop_3x_coco_tta',
    'sparse_rcnn_r50_fpn_500pro_50e_crowdhuman',
    'sparse_rcnn_r50_fpn_100pro_3x_d2', 'sparse_rcnn_r50_fpn_300pro_3x_d2',
    'sparse_rcnn_r101_fpn_100pro_3x_d2', 'sparse_rcnn_r101_fpn_300pro_3x_d2',
}
Metrics = Dict[Tuple[str, str], float]


def _metrics(model) -> Metrics:
    """``{(dataset, metric): value}`` of a model-index model."""
    return {(result.dataset, name): value
            for result in model.results
            for name, value in result.metrics.items()}


def _readme_rows() -> Dict[str, Tuple[Metrics, str]]:
    """Config path -> (published metrics, download cell) of each row of
    the README's model-zoo table."""
    with open(osp.join(REPO, 'README.md')) as f:
        text = f.read().split('## Model zoo')[1].split('\n## ')[0]
    rows = {}
    for line in text.splitlines():
        if not line.startswith('| ['):
            continue
        cells = [c.strip() for c in line.strip('|').split(' | ')]
        config = re.search(r'\]\((configs/[^)]+\.py)\)', cells[0]).group(1)
        ap = cells[4]
        if m := re.fullmatch(r'([\d.]+)( \(test-dev\))?', ap):
            dataset = 'COCO test-dev' if m.group(2) else 'COCO'
            metrics = {(dataset, 'box AP'): float(m.group(1))}
        elif m := re.fullmatch(r'([\d.]+) / mask ([\d.]+)', ap):
            metrics = {('COCO', 'box AP'): float(m.group(1)),
                       ('COCO', 'mask AP'): float(m.group(2))}
        elif m := re.fullmatch(r'CrowdHuman AP ([\d.]+), mMR ([\d.]+)', ap):
            metrics = {('CrowdHuman', 'AP'): float(m.group(1)),
                       ('CrowdHuman', 'mMR'): float(m.group(2))}
        else:
            raise AssertionError(f'unknown AP cell {ap!r} in README')
        rows[config] = (metrics, cells[-1])
    return rows


def _build_package(build_lib: str) -> str:
    """Run setup.py's ``build_py`` into ``build_lib`` (as ``pip install .``
    does) and add the metadata pip would install; returns the package
    folder."""
    from setuptools.dist import Distribution
    spec = importlib.util.spec_from_file_location(
        'mmdet_sparse_setup', osp.join(REPO, 'setup.py'))
    setup_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_py)
    dist = Distribution(dict(
        name='mmdet_sparse', packages=['mmdet_sparse'],
        package_dir={'mmdet_sparse': osp.join(REPO, 'mmdet_sparse')},
        cmdclass={'build_py': setup_py.BuildPyWithMim},
        script_name=osp.join(REPO, 'setup.py')))
    cmd = dist.get_command_obj('build_py')
    cmd.build_lib = build_lib
    cmd.ensure_finalized()
    cmd.run()
    info = osp.join(build_lib, 'mmdet_sparse-0.1.0.dist-info')
    os.makedirs(info)
    with open(osp.join(info, 'METADATA'), 'w') as f:
        f.write('Metadata-Version: 2.1\nName: mmdet_sparse\n'
                'Version: 0.1.0\n')
    with open(osp.join(info, 'top_level.txt'), 'w') as f:
        f.write('mmdet_sparse\n')
    return osp.join(build_lib, 'mmdet_sparse')


class TestModelIndex(unittest.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        cls.index = load(osp.join(REPO, 'model-index.yml'))
        cls.models = {m.name: m for m in cls.index.models}
        cls.collections = {c.name: c for c in cls.index.collections}
        cls.mmdet = {}
        for folder in ('sparse_rcnn', 'queryinst'):
            cls.mmdet.update({m.name: m for m in load(
                osp.join(MMDET_CONFIGS, folder, 'metafile.yml')).models})

    def test_yaml_and_fields(self) -> None:
        with open(osp.join(REPO, 'model-index.yml')) as f:
            imports = yaml.safe_load(f)['Import']
        self.assertEqual(
            sorted(imports),
            sorted(osp.relpath(p, REPO) for p in glob.glob(
                osp.join(REPO, 'configs', '**', 'metafile.yml'),
                recursive=True)))
        self.assertEqual(len(self.models), len(self.index.models))
        for name, model in self.models.items():
            with self.subTest(model=name):
                self.assertIn(model.in_collection, self.collections)
                self.assertEqual(
                    name, osp.splitext(osp.basename(model.config))[0])
                self.assertTrue(model.results and model.metadata.epochs)
                self.assertEqual(name in NO_WEIGHTS, model.weights is None)
        for collection in self.collections.values():
            self.assertTrue(collection.paper['URL'].startswith('https://'))
            self.assertTrue(osp.isfile(osp.join(REPO,
                                                collection.code['URL'])))

    def test_configs_exist_and_load(self) -> None:
        for name, model in self.models.items():
            with self.subTest(model=name):
                path = osp.join(REPO, model.config)
                # mim train finds a config by its file name: one match.
                self.assertEqual(
                    glob.glob(osp.join(REPO, 'configs', '**',
                                       osp.basename(path)), recursive=True),
                    [path])
                cfg = Config.fromfile(path)
                expected = ('QueryInst' if model.in_collection == 'QueryInst'
                            else 'SparseRCNN')
                self.assertEqual(cfg.model.type, expected)

    def test_weights_are_mmdetections(self) -> None:
        ours = {name for name, m in self.models.items()
                if m.weights and 'download.openmmlab.com' in m.weights}
        self.assertEqual(ours, set(MMDET_NAMES))
        for name, mmdet_name in MMDET_NAMES.items():
            with self.subTest(model=name):
                theirs = self.mmdet[mmdet_name]
                self.assertEqual(self.models[name].weights, theirs.weights)
                self.assertEqual(_metrics(self.models[name]),
                                 _metrics(theirs))
                self.assertTrue(osp.isfile(
                    osp.join(osp.dirname(MMDET_CONFIGS), theirs.config)))
        # docs/model_zoo.md lists the same pairs.
        with open(osp.join(REPO, 'docs', 'model_zoo.md')) as f:
            pairs = re.findall(r'^\| `configs/(?:\w+/)?([^`/]+)\.py` \| '
                               r'`configs/\w+/([^`/]+)\.py` \|$',
                               f.read(), re.MULTILINE)
        self.assertEqual(dict(pairs), MMDET_NAMES)

    def test_published_ap_and_links_match_readme(self) -> None:
        rows = _readme_rows()
        by_config = {m.config: m for m in self.models.values()}
        self.assertEqual(set(rows), set(by_config))
        for config, (metrics, download) in rows.items():
            model = by_config[config]
            with self.subTest(model=model.name):
                self.assertEqual(_metrics(model), metrics)
                if model.weights:
                    self.assertIn(f'[model]({model.weights})', download)
                    if model.name in MMDET_NAMES:
                        self.assertIn('[log](', download)
                elif model.name.endswith('_d2'):
                    source = self.collections[model.in_collection].data[
                        'Converted From']['Weights']
                    self.assertIn(f'({source})', download)
                    self.assertIn('sparse_rcnn_d2_to_mmdet.py', download)
                    self.assertIn(f'--config {config}', download)
                else:
                    self.assertEqual(download, 'none released')

    def test_mim_reads_the_built_package(self) -> None:
        """mim 0.3.9 (search, download, train) on the layout that
        ``pip install .`` installs, without network."""
        with tempfile.TemporaryDirectory() as tmp:
            site = osp.join(tmp, 'site')
            package = _build_package(site)
            mim_dir = osp.join(package, '.mim')
            self.assertEqual(sorted(os.listdir(mim_dir)),
                             ['configs', 'model-index.yml', 'tools'])
            self.assertTrue(osp.isfile(osp.join(mim_dir, 'tools',
                                                'train.py')))
            self.assertFalse(glob.glob(osp.join(mim_dir, '**', '__pycache__'),
                                       recursive=True))
            sys.path.insert(0, site)  # found before the editable install
            try:
                self._check_mim_api(package, osp.join(tmp, 'dest'))
            finally:
                sys.path.remove(site)
                importlib.reload(importlib.import_module('pkg_resources'))

    def _check_mim_api(self, package: str, dest: str) -> None:
        from click.testing import CliRunner
        from mim.commands.search import cli, get_model_info
        from mim.utils import get_installed_path
        self.assertEqual(get_installed_path('mmdet_sparse'), package)
        # `mim search mmdet_sparse --valid-config`
        out = CliRunner().invoke(cli, ['mmdet_sparse', '--valid-config'])
        self.assertEqual(out.exit_code, 0, out.output)
        for name in self.models:
            self.assertIn(name, out.output)
        info = get_model_info('mmdet_sparse', to_dict=True)
        self.assertEqual(set(info), set(self.models))
        name = 'sparse_rcnn_r50_fpn_3x_coco'
        self.assertEqual(info[name]['weight'], self.models[name].weights)
        self.assertEqual(info[name]['coco/box_ap'], 42.8)

        download = importlib.import_module('mim.commands.download')
        fetched = []
        with mock.patch.object(download, 'download_from_file',
                               lambda url, path, **kw: fetched.append(
                                   (url, path))):
            download.download('mmdet_sparse', [name], dest_root=dest)
        weights = self.models[name].weights
        self.assertEqual(
            fetched, [(weights, osp.join(dest, osp.basename(weights)))])
        self.assertEqual(Config.fromfile(osp.join(dest, name + '.py'))
                         .model.type, 'SparseRCNN')

        train = importlib.import_module('mim.commands.train')
        calls = []
        with mock.patch.object(train.subprocess, 'check_output',
                               return_value=b''), mock.patch.object(
                                   train.subprocess, 'check_call',
                                   side_effect=lambda cmd, **kw: calls.append(
                                       cmd) or 0):
            ok, _ = train.train('mmdet_sparse', name + '.py', gpus=0,
                                launcher='none', yes=True)
        self.assertTrue(ok)
        mim_dir = osp.join(package, '.mim')
        self.assertEqual(calls[0][1:3], [
            osp.join(mim_dir, 'tools', 'train.py'),
            osp.join(mim_dir, 'configs', name + '.py')
        ])
