"""Build step for OpenMMLab's ``mim``; the project's metadata is in
pyproject.toml.

``mim search/download/train mmdet_sparse`` look for ``configs/``, ``tools/``
and ``model-index.yml`` under ``<installed package>/.mim/``. A built wheel
(``pip install .``) gets copies of them there. An editable install
(``pip install -e .``) gets nothing: mim looks for the package next to the
installed metadata (site-packages), where an editable install has no
package folder (see docs/model_zoo.md).
"""
import os
import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

#: What ``<package>/.mim/`` holds, relative to the project root.
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')


def copy_mim_files(root: str, package_dir: str) -> str:
    """Copy :data:`MIM_ITEMS` from ``root`` into ``package_dir/.mim``
    (replaced if it exists); returns that folder."""
    mim_dir = osp.join(package_dir, '.mim')
    shutil.rmtree(mim_dir, ignore_errors=True)
    os.makedirs(mim_dir)
    ignore = shutil.ignore_patterns('__pycache__', '*.py[co]')
    for item in MIM_ITEMS:
        src, dst = osp.join(root, item), osp.join(mim_dir, item)
        if osp.isdir(src):
            shutil.copytree(src, dst, ignore=ignore)
        else:
            shutil.copy2(src, dst)
    return mim_dir


class BuildPyWithMim(build_py):
    """``build_py`` that also writes ``mmdet_sparse/.mim/`` into the
    build (not in editable mode, which builds nothing there)."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            copy_mim_files(osp.dirname(osp.abspath(__file__)),
                           osp.join(self.build_lib, 'mmdet_sparse'))


if __name__ == '__main__':
    setup(cmdclass={'build_py': BuildPyWithMim})
