"""Decide how ``tools/setup_env.sh`` builds mmcv's ops on this machine.

mmcv compiles its CUDA kernels only when a GPU is visible or ``FORCE_CUDA=1``
(its ``setup.py``), so a build on a machine without a GPU silently gets
CPU-only ops. This script decides, from the facts of the machine, whether
the ops are built with CUDA kernels (``FORCE_CUDA=1`` and
``TORCH_CUDA_ARCH_LIST``), under which wheel-cache key, and whether the
installed mmcv still fits.

A CUDA toolkit counts when it is found the way
``torch.utils.cpp_extension`` finds it (``CUDA_HOME``/``CUDA_PATH``, else
``nvcc`` on ``PATH``, else ``/usr/local/cuda``), its ``nvcc`` reports the
same major version as ``torch.version.cuda`` (the extension builder refuses a
major mismatch and only warns about a minor one), and its include directory
has the headers that torch's CUDA headers include (cuBLAS, cuSPARSE,
cuSOLVER); without them every CUDA source of mmcv fails to compile.

Run with the environment's python (torch installed; this package need not
be). It prints shell assignments (``MMCV_ACTION``, ``MMCV_OPS``,
``MMCV_INSTALLED``, ``MMCV_WHEEL_KEY``, ``MMCV_ARCH_LIST``,
``MMCV_CUDA_HOME``) for ``eval``, notes on stderr, and on a machine with a
GPU but no usable toolkit exits with status 2 and a message.

Environment: ``TORCH_CUDA_ARCH_LIST`` is honoured as given;
``MMDET_SPARSE_CPU_OPS=1`` builds (and accepts) CPU-only ops deliberately.
"""

import argparse
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

# Headers that ATen/cuda/CUDAContextLight.h includes (mmcv's CUDA sources
# include ATen/cuda/CUDAContext.h).
REQUIRED_HEADERS = ('cuda_runtime_api.h', 'cublas_v2.h', 'cusparse.h',
                    'cusolverDn.h')

# Default TORCH_CUDA_ARCH_LIST when no GPU is visible, by the nvcc version
# that compiles it (first entry whose minimum it meets). CUDA 13 dropped
# sm_50..sm_72; 12.8 added sm_100/sm_120; 11.8 added sm_89/sm_90.
DEFAULT_ARCH_LISTS: Tuple[Tuple[Tuple[int, int], str], ...] = (
    ((13, 0), '7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX'),
    ((12, 8), '7.0;7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX'),
    ((11, 8), '7.0;7.5;8.0;8.6;8.9;9.0+PTX'),
    ((0, 0), '7.0;7.5;8.0;8.6+PTX'),
)

CPU_TAG = 'cudanone'  # wheel-key suffix of CPU-only ops (the old key's)


class PlanError(RuntimeError):
    """The machine cannot get the ops it needs; the message says why."""


@dataclass(frozen=True)
class Facts:
    """What the decision depends on; :func:`gather_facts` reads them."""

    torch_version: str
    torch_cuda: Optional[str]  # torch.version.cuda, e.g. '13.0'
    python_tag: str = 'py3'
    cuda_home: Optional[str] = None  # where the toolkit was looked for
    nvcc_version: Optional[str] = None  # 'X.Y' from nvcc --version
    missing_headers: Tuple[str, ...] = ()
    gpus: Tuple[Tuple[int, int], ...] = ()  # compute capabilities
    installed: str = 'none'  # installed mmcv ops: none | cpu | cudaX.Y
    arch_list_env: Optional[str] = None  # user's TORCH_CUDA_ARCH_LIST
    cpu_ops_env: bool = False  # MMDET_SPARSE_CPU_OPS=1


@dataclass
class Plan:
    """What setup_env.sh does with mmcv."""

    action: str  # keep | build
    ops: str  # cpu | cuda: what a build produces
    installed: str
    wheel_key: str
    arch_list: str = ''
    cuda_home: str = ''
    notes: List[str] = field(default_factory=list)

    def shell(self) -> str:
        """Shell-safe ``NAME=value`` lines for ``eval``."""
        values = dict(MMCV_ACTION=self.action, MMCV_OPS=self.ops,
                      MMCV_INSTALLED=self.installed,
                      MMCV_WHEEL_KEY=self.wheel_key,
                      MMCV_ARCH_LIST=self.arch_list,
                      MMCV_CUDA_HOME=self.cuda_home)
        return ''.join(f'{k}={shlex.quote(v)}\n' for k, v in values.items())


def _major(version: Optional[str]) -> Optional[int]:
    """Major number of 'X.Y[.Z]' (None for None or garbage)."""
    match = re.match(r'(\d+)', version or '')
    return int(match.group(1)) if match else None


def _version_tuple(version: str) -> Tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r'\d+', version)[:2])


def normalize_installed(raw: Optional[str]) -> str:
    """Map what mmcv reports (``get_compiling_cuda_version()``) or a stamp
    holds to ``none`` | ``cpu`` | ``cudaX.Y``."""
    raw = (raw or '').strip()
    if raw in ('', 'none'):
        return 'none'
    if raw in ('cpu', 'not available'):
        return 'cpu'
    version = raw[4:] if raw.startswith('cuda') else raw
    return f'cuda{version}' if _major(version) is not None else 'none'


def default_arch_list(nvcc_version: str) -> str:
    """The documented default arch list for an nvcc version."""
    version = _version_tuple(nvcc_version)
    for minimum, archs in DEFAULT_ARCH_LISTS:
        if version >= minimum:
            return archs
    return DEFAULT_ARCH_LISTS[-1][1]


def gpu_arch_list(gpus: Sequence[Tuple[int, int]]) -> str:
    """Arch list of the visible GPUs, the newest also as PTX (as torch)."""
    archs = sorted(set(gpus))
    names = [f'{major}.{minor}' for major, minor in archs]
    return ';'.join(names) + '+PTX'


def install_hint(torch_cuda: str) -> str:
    """How to get a toolkit matching torch's CUDA."""
    return (f'Install a CUDA toolkit {torch_cuda} (same major version as '
            f"torch's CUDA {torch_cuda}, with the cuBLAS/cuSPARSE/cuSOLVER "
            f'headers) and point CUDA_HOME at it: on a cluster e.g. '
            f'`module load cuda/{torch_cuda}`; with conda e.g. '
            f'`conda install -c nvidia cuda-toolkit={torch_cuda}` or '
            f'cuda-nvcc plus the libcublas/libcusparse/libcusolver dev '
            f'packages. Or set MMDET_SPARSE_CPU_OPS=1 to accept CPU-only '
            f'mmcv ops deliberately (CUDA tensors then fail in mmcv ops).')


def decide(facts: Facts) -> Plan:
    """The pure decision: what to build and whether the installed mmcv
    fits. Raises :class:`PlanError` when a GPU is visible but CUDA ops can
    neither be kept nor built."""
    notes: List[str] = []
    torch_major = _major(facts.torch_cuda)
    installed = facts.installed
    installed_major = _major(installed[4:]) if installed.startswith(
        'cuda') else None
    toolkit = None  # reason the toolkit is unusable, or None when usable
    if torch_major is None:
        toolkit = 'torch is not a CUDA build'
    elif facts.nvcc_version is None:
        toolkit = 'no nvcc found' + (
            f' (looked in {facts.cuda_home})' if facts.cuda_home else '')
    elif _major(facts.nvcc_version) != torch_major:
        toolkit = (f'nvcc {facts.nvcc_version} in {facts.cuda_home} does '
                   f"not match torch's CUDA {facts.torch_cuda} (major)")
    elif facts.missing_headers:
        toolkit = (f'the CUDA toolkit in {facts.cuda_home} lacks '
                   f'{", ".join(facts.missing_headers)}')
    elif facts.nvcc_version != facts.torch_cuda:
        notes.append(f'nvcc {facts.nvcc_version} vs torch CUDA '
                     f'{facts.torch_cuda}: same major, torch accepts it')

    ops = 'cpu' if facts.cpu_ops_env or toolkit is not None else 'cuda'
    cuda_installed = (installed_major is not None
                      and installed_major == torch_major)
    # A visible GPU needs CUDA kernels unless CPU-only ops are accepted.
    needs_cuda = (torch_major is not None and bool(facts.gpus)
                  and not facts.cpu_ops_env)
    fits = cuda_installed or (installed == 'cpu' and ops == 'cpu'
                         and not needs_cuda)
    if ops == 'cpu' and not cuda_installed and torch_major is not None:
        notes.append('MMDET_SPARSE_CPU_OPS=1: CPU-only mmcv ops accepted'
                     if facts.cpu_ops_env else
                     f'{toolkit}: mmcv ops without CUDA kernels')
    if not fits and ops == 'cpu' and needs_cuda:
        have = {'none': 'mmcv is not installed',
                'cpu': 'the installed mmcv ops have no CUDA kernels'}.get(
                    installed, f'the installed mmcv ops are built for '
                               f'{installed}')
        raise PlanError(f'A GPU is visible but {have}, and CUDA ops cannot '
                        f'be built: {toolkit}. '
                        + install_hint(facts.torch_cuda))
    if installed != 'none' and not fits:
        notes.append(f'installed mmcv ops ({installed}) do not fit this '
                     f'machine: rebuilding with {ops} ops')

    plan = Plan(action='keep' if fits else 'build', ops=ops,
                installed=installed, wheel_key='', notes=notes)
    tag = CPU_TAG
    if ops == 'cuda':
        if facts.arch_list_env:
            plan.arch_list = ';'.join(facts.arch_list_env.split())
        elif facts.gpus:
            plan.arch_list = gpu_arch_list(facts.gpus)
        else:
            plan.arch_list = default_arch_list(facts.nvcc_version)
        plan.cuda_home = facts.cuda_home or ''
        tag = (f'cuda{facts.nvcc_version}-arch'
               + re.sub(r'[^0-9A-Za-z.+]+', '_', plan.arch_list))
    plan.wheel_key = f'{facts.python_tag}-torch{facts.torch_version}-{tag}'
    return plan


def find_cuda_home(env: Dict[str, str]) -> Optional[str]:
    """CUDA_HOME as ``torch.utils.cpp_extension._find_cuda_home`` finds it."""
    home = env.get('CUDA_HOME') or env.get('CUDA_PATH')
    if home is None:
        nvcc = shutil.which('nvcc', path=env.get('PATH'))
        if nvcc is not None:
            home = os.path.dirname(os.path.dirname(nvcc))
        elif os.path.exists('/usr/local/cuda'):
            home = '/usr/local/cuda'
    return home


def nvcc_version(cuda_home: Optional[str]) -> Optional[str]:
    """'X.Y' from ``$CUDA_HOME/bin/nvcc --version`` (torch's regex)."""
    nvcc = os.path.join(cuda_home or '', 'bin', 'nvcc')
    if not cuda_home or not os.path.exists(nvcc):
        return None
    try:
        out = subprocess.run([nvcc, '--version'], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'release (\d+[.]\d+)', out)
    return match.group(1) if match else None


def missing_headers(cuda_home: str, env: Dict[str, str]) -> Tuple[str, ...]:
    """REQUIRED_HEADERS found in none of the include dirs a build uses."""
    dirs = [os.path.join(cuda_home, 'include')]
    for name in ('CUDA_INC_PATH', 'CPATH', 'CPLUS_INCLUDE_PATH'):
        dirs += [d for d in env.get(name, '').split(os.pathsep) if d]
    return tuple(h for h in REQUIRED_HEADERS
                 if not any(os.path.exists(os.path.join(d, h))
                            for d in dirs))


def probe_installed(mmcv_version: Optional[str]) -> str:
    """Ops of the importable mmcv (``none`` if absent, broken, or not
    ``mmcv_version``)."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            import mmcv
            import mmcv.ops
            if mmcv_version and mmcv.__version__ != mmcv_version:
                return 'none'
            return normalize_installed(mmcv.ops.get_compiling_cuda_version())
    except Exception:  # any failure: no usable mmcv
        return 'none'


def gather_facts(installed: Optional[str] = None,
                 mmcv_version: Optional[str] = None,
                 env: Optional[Dict[str, str]] = None) -> Facts:
    """Read the facts of this machine (imports torch)."""
    import torch
    env = dict(os.environ if env is None else env)
    gpus: List[Tuple[int, int]] = []
    if torch.version.cuda and torch.cuda.is_available():
        # Clamp to torch's newest arch, as cpp_extension does.
        sms = [int(a.split('_')[1]) for a in torch.cuda.get_arch_list()
               if a.startswith('sm_') and a.split('_')[1].isdigit()]
        newest = max(((s // 10, s % 10) for s in sms), default=(99, 9))
        gpus = [min(tuple(torch.cuda.get_device_capability(i)), newest)
                for i in range(torch.cuda.device_count())]
    cuda_home = find_cuda_home(env) if torch.version.cuda else None
    nvcc = nvcc_version(cuda_home)
    return Facts(
        torch_version=torch.__version__, torch_cuda=torch.version.cuda,
        python_tag=f'py{sys.version_info[0]}{sys.version_info[1]}',
        cuda_home=cuda_home, nvcc_version=nvcc,
        missing_headers=missing_headers(cuda_home, env) if nvcc else (),
        gpus=tuple(gpus),
        installed=(normalize_installed(installed) if installed is not None
                   else probe_installed(mmcv_version)),
        arch_list_env=env.get('TORCH_CUDA_ARCH_LIST') or None,
        cpu_ops_env=env.get('MMDET_SPARSE_CPU_OPS', '') == '1')


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print the plan as shell assignments; 2 with a message on error."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--installed', help='ops of the installed mmcv '
                        '(none | cpu | not available | X.Y | cudaX.Y); '
                        'probed by importing mmcv.ops when omitted')
    parser.add_argument('--mmcv-version', help='the probed mmcv counts '
                        'only with this version')
    parser.add_argument('--quiet', action='store_true', help='no notes')
    args = parser.parse_args(argv)
    try:
        plan = decide(gather_facts(args.installed, args.mmcv_version))
    except PlanError as err:
        print(f'[mmcv_build_plan] error: {err}', file=sys.stderr)
        return 2
    if not args.quiet:
        for note in plan.notes:
            print(f'[mmcv_build_plan] {note}', file=sys.stderr)
    sys.stdout.write(plan.shell())
    return 0


if __name__ == '__main__':
    sys.exit(main())
