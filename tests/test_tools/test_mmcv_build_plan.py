"""Tests of ``tools/mmcv_build_plan.py``: how setup_env.sh builds mmcv's ops
(CUDA kernels or not), under which wheel key, and when it rebuilds."""
import importlib.util
import os
import os.path as osp
import shlex
import subprocess
import sys
import tempfile
from unittest import TestCase, mock

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'mmcv_build_plan.py')
CUDA_13_DEFAULT = '7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX'


def _load():
    spec = importlib.util.spec_from_file_location('mmcv_build_plan', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestMmcvBuildPlan(TestCase):

    @classmethod
    def setUpClass(cls):
        cls.m = _load()

    def facts(self, **kw):
        """This machine's torch (a cu130 build), no toolkit, no GPU."""
        base = dict(torch_version='2.13.0+cu130', torch_cuda='13.0',
                    python_tag='py311', cuda_home='/opt/cuda-13.0')
        base.update(kw)
        return self.m.Facts(**base)

    def run_script(self, env, *args):
        out = subprocess.run([sys.executable, SCRIPT, *args], env=env,
                             capture_output=True, text=True, timeout=300)
        self.assertEqual(out.returncode, 0, out.stderr)
        pairs = (shlex.split(line)[0].partition('=')
                 for line in out.stdout.splitlines())
        return {name: value for name, _, value in pairs}

    def clean_env(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ('CUDA_HOME', 'CUDA_PATH', 'CUDA_INC_PATH',
                            'CPATH', 'CPLUS_INCLUDE_PATH',
                            'TORCH_CUDA_ARCH_LIST', 'MMDET_SPARSE_CPU_OPS')}
        env['CUDA_VISIBLE_DEVICES'] = ''  # no GPU, whatever the machine
        return env

    def test_no_toolkit_no_gpu_builds_cpu_ops_under_the_old_key(self):
        plan = self.m.decide(self.facts())
        self.assertEqual((plan.action, plan.ops), ('build', 'cpu'))
        # The key of the CPU-only wheels cached before CUDA ops were planned.
        self.assertEqual(plan.wheel_key, 'py311-torch2.13.0+cu130-cudanone')
        self.assertEqual((plan.arch_list, plan.cuda_home), ('', ''))
        self.assertIn('no nvcc found', plan.notes[0])
        kept = self.m.decide(self.facts(installed='cpu'))
        self.assertEqual((kept.action, kept.ops), ('keep', 'cpu'))

    def test_matching_toolkit_without_gpu_forces_cuda_default_archs(self):
        plan = self.m.decide(self.facts(nvcc_version='13.0'))
        self.assertEqual((plan.action, plan.ops), ('build', 'cuda'))
        self.assertEqual(plan.arch_list, CUDA_13_DEFAULT)
        self.assertEqual(plan.cuda_home, '/opt/cuda-13.0')
        self.assertEqual(
            plan.wheel_key, 'py311-torch2.13.0+cu130-cuda13.0-arch'
            '7.5_8.0_8.6_8.9_9.0_10.0_12.0+PTX')
        # The default follows the compiler: CUDA 12.4 still has sm_70.
        plan = self.m.decide(self.facts(torch_cuda='12.4',
                                        nvcc_version='12.4'))
        self.assertEqual(plan.arch_list, '7.0;7.5;8.0;8.6;8.9;9.0+PTX')
        self.assertEqual(self.m.default_arch_list('12.8'),
                         '7.0;7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX')
        self.assertEqual(self.m.default_arch_list('11.7'),
                         '7.0;7.5;8.0;8.6+PTX')

    def test_matching_toolkit_with_gpus_uses_their_archs(self):
        plan = self.m.decide(self.facts(nvcc_version='13.0',
                                        gpus=((8, 6), (8, 0), (8, 6))))
        self.assertEqual((plan.ops, plan.arch_list), ('cuda', '8.0;8.6+PTX'))
        self.assertTrue(plan.wheel_key.endswith('-cuda13.0-arch8.0_8.6+PTX'))

    def test_minor_mismatch_is_accepted_like_torch(self):
        plan = self.m.decide(self.facts(nvcc_version='13.1'))
        self.assertEqual(plan.ops, 'cuda')
        self.assertIn('same major', plan.notes[0])

    def test_gpu_without_toolkit_stops_with_what_to_install(self):
        with self.assertRaises(self.m.PlanError) as ctx:
            self.m.decide(self.facts(gpus=((9, 0), )))
        message = str(ctx.exception)
        for part in ('CUDA toolkit 13.0', 'module load cuda/13.0',
                     'CUDA_HOME', 'cuda-nvcc', 'MMDET_SPARSE_CPU_OPS=1'):
            self.assertIn(part, message)
        # The override builds CPU-only ops deliberately.
        plan = self.m.decide(self.facts(gpus=((9, 0), ), cpu_ops_env=True))
        self.assertEqual((plan.action, plan.ops), ('build', 'cpu'))
        self.assertIn('MMDET_SPARSE_CPU_OPS=1', plan.notes[0])

    def test_toolkit_major_mismatch(self):
        # Without a GPU: CPU ops, saying why the toolkit is ignored.
        plan = self.m.decide(self.facts(nvcc_version='12.8'))
        self.assertEqual(plan.ops, 'cpu')
        self.assertIn("nvcc 12.8 in /opt/cuda-13.0 does not match torch's "
                      'CUDA 13.0', plan.notes[0])
        # With a GPU: an error naming both versions.
        with self.assertRaises(self.m.PlanError) as ctx:
            self.m.decide(self.facts(nvcc_version='12.8', gpus=((8, 0), )))
        self.assertIn('nvcc 12.8', str(ctx.exception))
        self.assertIn('CUDA toolkit 13.0', str(ctx.exception))

    def test_toolkit_without_library_headers_does_not_count(self):
        facts = self.facts(nvcc_version='13.0',
                           missing_headers=('cublas_v2.h', 'cusparse.h'))
        plan = self.m.decide(facts)
        self.assertEqual(plan.ops, 'cpu')
        self.assertIn('lacks cublas_v2.h, cusparse.h', plan.notes[0])
        with self.assertRaises(self.m.PlanError):
            self.m.decide(self.facts(nvcc_version='13.0', gpus=((8, 0), ),
                                     missing_headers=('cusparse.h', )))

    def test_installed_cpu_ops_rebuilt_once_a_toolkit_is_present(self):
        plan = self.m.decide(self.facts(nvcc_version='13.0', installed='cpu'))
        self.assertEqual((plan.action, plan.ops), ('build', 'cuda'))
        self.assertIn('do not fit', plan.notes[-1])
        # GPU visible, CPU-only ops installed, no toolkit: stop.
        with self.assertRaises(self.m.PlanError) as ctx:
            self.m.decide(self.facts(installed='cpu', gpus=((8, 0), )))
        self.assertIn('no CUDA kernels', str(ctx.exception))

    def test_installed_cuda_ops(self):
        # Built elsewhere with a matching toolkit: kept, toolkit or not.
        for gpus in ((), ((8, 0), )):
            plan = self.m.decide(self.facts(installed='cuda13.0', gpus=gpus))
            self.assertEqual(plan.action, 'keep')
            self.assertEqual(plan.notes, [])
        # Built for another CUDA major than torch's: rebuilt.
        plan = self.m.decide(self.facts(installed='cuda12.1',
                                        nvcc_version='13.0'))
        self.assertEqual((plan.action, plan.ops), ('build', 'cuda'))
        plan = self.m.decide(self.facts(installed='cuda12.1'))
        self.assertEqual((plan.action, plan.ops), ('build', 'cpu'))

    def test_user_arch_list_is_honoured(self):
        for gpus in ((), ((8, 0), )):
            plan = self.m.decide(self.facts(nvcc_version='13.0', gpus=gpus,
                                            arch_list_env='8.0 9.0+PTX'))
            self.assertEqual(plan.arch_list, '8.0;9.0+PTX')
            self.assertTrue(plan.wheel_key.endswith('-arch8.0_9.0+PTX'))

    def test_cpu_torch_and_installed_state_parsing(self):
        plan = self.m.decide(self.facts(torch_version='2.13.0+cpu',
                                        torch_cuda=None, nvcc_version=None,
                                        installed='cpu'))
        self.assertEqual((plan.action, plan.ops, plan.notes),
                         ('keep', 'cpu', []))
        norm = self.m.normalize_installed
        self.assertEqual([norm(x) for x in (
            None, 'none', 'not available', 'cpu', '13.0', 'cuda12.1', 'x')],
            ['none', 'none', 'cpu', 'cpu', 'cuda13.0', 'cuda12.1', 'none'])

    def test_shell_output_is_safe_to_eval(self):
        plan = self.m.decide(self.facts(nvcc_version='13.0',
                                        cuda_home="/opt/my cuda's"))
        out = subprocess.run(
            ['bash', '-c', plan.shell() + 'printf "%s|" "$MMCV_ARCH_LIST" '
             '"$MMCV_CUDA_HOME" "$MMCV_ACTION"'],
            capture_output=True, text=True, check=True).stdout
        self.assertEqual(out, f"{CUDA_13_DEFAULT}|/opt/my cuda's|build|")

    def fake_toolkit(self, root, version, headers=None):
        """``root/bin/nvcc`` printing ``version``, and the headers."""
        os.makedirs(osp.join(root, 'bin'))
        os.makedirs(osp.join(root, 'include'))
        for header in self.m.REQUIRED_HEADERS if headers is None else headers:
            open(osp.join(root, 'include', header), 'w').close()
        nvcc = osp.join(root, 'bin', 'nvcc')
        with open(nvcc, 'w') as f:
            f.write('#!/bin/sh\necho "Cuda compilation tools, release '
                    f'{version}, V{version}.48"\n')
        os.chmod(nvcc, 0o755)

    def test_gather_facts_reads_gpus_and_toolkit(self):
        cuda = torch.cuda
        with tempfile.TemporaryDirectory() as tmp, \
                mock.patch.object(torch.version, 'cuda', '13.0'), \
                mock.patch.object(cuda, 'is_available', return_value=True), \
                mock.patch.object(cuda, 'device_count', return_value=2), \
                mock.patch.object(cuda, 'get_device_capability',
                                  side_effect=[(8, 0), (12, 1)]), \
                mock.patch.object(cuda, 'get_arch_list',
                                  return_value=['sm_80', 'sm_120']):
            self.fake_toolkit(tmp, '13.0', headers=('cublas_v2.h', ))
            facts = self.m.gather_facts(
                'not available', env=dict(CUDA_HOME=tmp, CPATH=tmp))
        self.assertEqual(facts.torch_cuda, '13.0')
        self.assertEqual(facts.nvcc_version, '13.0')
        self.assertEqual(facts.cuda_home, tmp)
        # cusparse.h and friends are neither in CUDA_HOME/include nor CPATH.
        self.assertEqual(facts.missing_headers,
                         ('cuda_runtime_api.h', 'cusparse.h', 'cusolverDn.h'))
        # Clamped to torch's newest arch (12.0), as cpp_extension does.
        self.assertEqual(facts.gpus, ((8, 0), (12, 0)))
        self.assertEqual(facts.installed, 'cpu')
        self.assertEqual((facts.arch_list_env, facts.cpu_ops_env),
                         (None, False))

    def test_script_parses_a_fake_nvcc_on_path(self):
        version = torch.version.cuda or '13.0'
        with tempfile.TemporaryDirectory() as tmp:
            self.fake_toolkit(tmp, version)
            env = self.clean_env()
            env['PATH'] = osp.join(tmp, 'bin') + os.pathsep + env['PATH']
            values = self.run_script(env, '--installed', 'not available')
        if torch.version.cuda is None:  # a CPU torch never builds CUDA ops
            self.assertEqual(values['MMCV_OPS'], 'cpu')
            return
        self.assertEqual(values['MMCV_ACTION'], 'build')
        self.assertEqual(values['MMCV_INSTALLED'], 'cpu')
        self.assertEqual(values['MMCV_OPS'], 'cuda')
        self.assertEqual(values['MMCV_CUDA_HOME'], tmp)
        self.assertEqual(values['MMCV_ARCH_LIST'],
                         self.m.default_arch_list(version))
        self.assertIn(f'-cuda{version}-arch', values['MMCV_WHEEL_KEY'])

    def test_script_without_nvcc_keeps_cpu_ops(self):
        with tempfile.TemporaryDirectory() as tmp:
            env = self.clean_env()
            env['CUDA_HOME'] = tmp  # an empty toolkit: no nvcc
            built = self.run_script(env, '--installed', 'none')
            kept = self.run_script(env, '--installed', 'cpu', '--quiet')
        py = f'py{sys.version_info[0]}{sys.version_info[1]}'
        self.assertEqual(built['MMCV_WHEEL_KEY'],
                         f'{py}-torch{torch.__version__}-cudanone')
        self.assertEqual((built['MMCV_ACTION'], built['MMCV_OPS']),
                         ('build', 'cpu'))
        self.assertEqual((kept['MMCV_ACTION'], kept['MMCV_OPS']),
                         ('keep', 'cpu'))
