"""Build mmdet-eakd: the package, with the repository's configs in its .mim.

Like mmdet's wheel, which carries its configs in ``mmdet/.mim``, this package
carries ``configs/`` in ``mmdet_eakd/.mim/configs/configs/`` so that a config
can name a shipped one as ``mmdet_eakd::configs/<path in the repository>``
(see ``mmdet_eakd/scope.py``). A wheel gets a copy; an editable install
(``pip install -e``) gets a link to the checkout's ``configs/``, so an edited
config counts at once.
"""
import os
import shutil
from pathlib import Path
from typing import List

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PACKAGE = 'mmdet_eakd'
CONFIGS = HERE / 'configs'

#: mmengine reads ``.mim/model-index.yml`` before it falls back to
#: ``.mim/configs/<path>`` for a ``scope::path`` name (and fails without the
#: file). An index that imports no model metafiles sends every name there.
MODEL_INDEX = ('# No model metafiles: mmdet_eakd::<path> names '
               '.mim/configs/<path>.\nImport: []\n')


def read_requirements(path: str) -> List[str]:
    """The requirement lines of ``path``, comments and blank lines dropped."""
    with open(HERE / path) as f:
        return [
            line.split('#')[0].strip() for line in f
            if line.split('#')[0].strip()
        ]


def write_mim(mim: Path, link: bool) -> None:
    """(Re)create the package's ``.mim`` folder at ``mim``.

    Args:
        mim (Path): ``<package>/.mim`` in the build or source tree.
        link (bool): Link ``configs/`` (editable install) instead of copying
            it (wheel).
    """
    if mim.is_symlink() or mim.is_file():
        mim.unlink()
    elif mim.exists():
        shutil.rmtree(mim)  # removes links inside without following them
    target = mim / 'configs' / 'configs'
    target.parent.mkdir(parents=True)
    if link:
        target.symlink_to(os.path.relpath(CONFIGS, target.parent))
    else:
        shutil.copytree(CONFIGS, target,
                        ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    (mim / 'model-index.yml').write_text(MODEL_INDEX)


class BuildPyWithConfigs(build_py):
    """``build_py`` that also fills ``mmdet_eakd/.mim`` (mmdet's convention).

    In a wheel build the copy goes to the build tree; in an editable build the
    package is served from the source tree, so the link goes there (ignored by
    git).
    """

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            write_mim(HERE / PACKAGE / '.mim', link=True)
        else:
            write_mim(Path(self.build_lib) / PACKAGE / '.mim', link=False)


setup(
    name='mmdet_eakd',
    version='0.1.0',
    description='Entropy-based Adaptive Knowledge Distillation (EA-KD) for '
    'two-stage detectors in MMDetection 3.x',
    long_description=(HERE / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'configs', 'tools')),
    cmdclass={'build_py': BuildPyWithConfigs},
    python_requires='>=3.8',
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={'tests': read_requirements('requirements/tests.txt')},
    entry_points={
        'console_scripts': [
            'eakd-make-synthetic=mmdet_eakd.datasets.synthetic:main',
        ]
    },
    license='Apache License 2.0',
)
