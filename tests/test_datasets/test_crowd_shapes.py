"""The crowded-shapes CrowdHuman-format generator: layout, records that
MMDetection's CrowdHumanDataset reads, box relations, determinism, and the
replace-on-success writing."""
import contextlib
import importlib.util
import io
import json
import shutil
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import cv2

from mmdet_sparse.datasets import generate_crowd_shapes_odgt

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'make_demo_data.py'
PARAMS = dict(num_train=3, num_val=2, img_size=(96, 128), seed=0)


def _records(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines()]


class TestCrowdShapesOdgt(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        cls.out = cls.tmp / 'crowd'
        cls.info = generate_crowd_shapes_odgt(cls.out, **PARAMS)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_layout_and_records(self):
        names = sorted(p.name for p in self.out.iterdir())
        self.assertEqual(names, [
            'Images', 'annotation_train.odgt', 'annotation_val.odgt',
            'id_hw_train.json', 'id_hw_val.json', 'meta.json'
        ])
        for split, count in (('train', 3), ('val', 2)):
            records = _records(self.out / f'annotation_{split}.odgt')
            self.assertEqual(len(records), count)
            id_hw = json.loads((self.out / f'id_hw_{split}.json').read_text())
            persons = ignored = 0
            for rec in records:
                self.assertTrue(rec['ID'].startswith(split))
                img = cv2.imread(str(self.out / 'Images' / f"{rec['ID']}.jpg"))
                self.assertEqual(img.shape[:2], (96, 128))
                self.assertEqual(id_hw[rec['ID']], [96, 128])
                # Crowded: several shapes, overlapping full boxes.
                self.assertGreaterEqual(len(rec['gtboxes']), 5)
                for box in rec['gtboxes']:
                    self.assertIn(box['tag'], ('person', 'mask'))
                    self.assertEqual(box['tag'] == 'mask',
                                     box['extra'].get('ignore') == 1)
                    fx, fy, fw, fh = box['fbox']
                    vx, vy, vw, vh = box['vbox']
                    # The visible box lies inside the full box and the image.
                    self.assertTrue(fx <= vx and fy <= vy)
                    self.assertTrue(vx + vw <= fx + fw and vy + vh <= fy + fh)
                    self.assertTrue(0 <= vx and vx + vw <= 128)
                    self.assertTrue(0 <= vy and vy + vh <= 96)
                    hx, hy, hw, hh = box['hbox']
                    self.assertTrue(fx <= hx and hx + hw <= fx + fw)
                    self.assertEqual(hy, fy)
                    persons += box['tag'] == 'person'
                    ignored += box['tag'] == 'mask'
                self.assertTrue(any(b['extra']['occ'] for b in
                                    rec['gtboxes']))
            self.assertEqual(self.info[split]['num_persons'], persons)
            self.assertEqual(self.info[split]['num_ignored'], ignored)
        self.assertGreater(self.info['train']['num_ignored'] +
                           self.info['val']['num_ignored'], 0)

    def test_deterministic_and_replaced_whole(self):
        again = self.tmp / 'again'
        generate_crowd_shapes_odgt(again, **PARAMS)
        for name in ('annotation_train.odgt', 'annotation_val.odgt'):
            self.assertEqual((again / name).read_bytes(),
                             (self.out / name).read_bytes())
        first = again / 'Images' / 'train_00001.jpg'
        self.assertEqual(first.read_bytes(),
                         (self.out / 'Images' / first.name).read_bytes())
        # Fewer images: the old ones do not linger.
        generate_crowd_shapes_odgt(again, **dict(PARAMS, num_train=1))
        self.assertEqual(len(_records(again / 'annotation_train.odgt')), 1)
        self.assertFalse((again / 'Images' / 'train_00002.jpg').exists())
        self.assertEqual(sorted(p.name for p in self.tmp.iterdir()),
                         ['again', 'crowd'])  # no temporary folders left

    def test_refuses_a_foreign_folder(self):
        foreign = self.tmp / 'foreign'
        foreign.mkdir()
        (foreign / 'keep.txt').write_text('mine')
        with self.assertRaisesRegex(FileExistsError, 'foreign'):
            generate_crowd_shapes_odgt(foreign, **PARAMS)
        self.assertEqual((foreign / 'keep.txt').read_text(), 'mine')
        shutil.rmtree(foreign)
        with self.assertRaisesRegex(ValueError, 'num_objects'):
            generate_crowd_shapes_odgt(self.tmp / 'bad', num_objects=(3, 2))

    def test_command_line_format_odgt(self):
        spec = importlib.util.spec_from_file_location('make_demo_data', TOOL)
        tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tool)
        out = self.tmp / 'cli'
        argv = ['make_demo_data.py', '--format', 'odgt', '--out-dir',
                str(out), '--num-train', '1', '--num-val', '1']
        printed = io.StringIO()
        with mock.patch('sys.argv', argv), \
                contextlib.redirect_stdout(printed):
            tool.main()
        self.assertIn('class: person', printed.getvalue())
        self.assertEqual(len(_records(out / 'annotation_val.odgt')), 1)
        self.assertTrue((out / 'Images' / 'val_00001.jpg').is_file())
        shutil.rmtree(out)
