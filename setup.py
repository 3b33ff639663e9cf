import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

ROOT = osp.dirname(osp.abspath(__file__))


def add_mim_extension():
    """Put configs/, tools/ and model-index.yml under mmpetl/.mim/, as the
    OpenMMLab toolboxes do, so that mmengine resolves
    ``_base_ = 'mmpetl::...'`` and mim finds the tools.

    Symlinks for an editable install (``pip install -e .``), copies for a
    wheel or an sdist; nothing for other commands.
    """
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'copy' if os.name == 'nt' else 'symlink'
    elif 'sdist' in sys.argv or 'bdist_wheel' in sys.argv:
        mode = 'copy'
    else:
        return
    mim_path = osp.join(ROOT, 'mmpetl', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src = osp.join(ROOT, name)
        dst = osp.join(mim_path, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), dst)
        elif osp.isdir(src):
            shutil.copytree(
                src, dst, ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copyfile(src, dst)


#: The start-up hook that lets ``_base_ = 'mmpetl::...'`` resolve in programs
#: that do not import mmpetl first (``_mmpetl_bases.py``): installed at the top
#: of site-packages by the wheel and by the editable install.
PTH = 'mmpetl_bases.pth'


class BuildPyWithPth(build_py):
    """Also put :data:`PTH` at the top of the wheel."""

    def run(self):
        super().run()
        self.copy_file(osp.join(ROOT, PTH), osp.join(self.build_lib, PTH))

    def get_outputs(self, include_bytecode=True):
        return [
            *super().get_outputs(include_bytecode),
            osp.join(self.build_lib, PTH)
        ]


class EditableWheelWithPth(editable_wheel):
    """Also put :data:`PTH` at the top of the editable wheel (``pip install
    -e .``): setuptools writes there only its own path hook, and ignores
    what ``build_py`` copies (``_run_build_commands`` fills the wheel's
    folder, setuptools >= 64)."""

    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib,
                            tmp_dir):
        outputs = super()._run_build_commands(dist_name, unpacked_wheel,
                                              build_lib, tmp_dir)
        shutil.copyfile(osp.join(ROOT, PTH), osp.join(unpacked_wheel, PTH))
        return outputs


def get_version() -> str:
    """The version defined in mmpetl/version.py (without importing mmpetl,
    whose dependencies may not be installed yet)."""
    scope = {}
    with open(osp.join(ROOT, 'mmpetl', 'version.py')) as f:
        exec(compile(f.read(), 'mmpetl/version.py', 'exec'), scope)
    return scope['__version__']


def readme() -> str:
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        return f.read()


SEG = ['mmsegmentation>=1.2.0', 'ftfy', 'regex']
DET = ['mmdet>=3.3.0']
VIDEO = ['mmaction2>=1.2.0']
ONNX = ['onnx', 'onnxruntime']
# tools/benchmarks/peers.py only (peft's LoRA / DoRA as the peer); peft
# 0.10 is the last that runs beside mmpretrain 1.2 (it needs transformers<4.41:
# mmpretrain's BLIP imports helpers later releases removed).
BENCHMARK = ['peft>=0.10,<0.11', 'transformers>=4.38,<4.41']
DOCS = ['sphinx>=8.1', 'myst-parser>=4.0', 'furo', 'sphinx-mathjax-offline']
# `mim train mmpetl CONFIG` and friends (docs/en/get_started.md); openmim
# brings pandas and openxlab, so it stays out of the tests' requirements.
MIM = ['openmim']
# What tools/setup_env.sh installs for the test suite (requirements.txt).
TESTS = ['pytest', 'pytest-xdist', 'scikit-learn', 'scikit-image', *SEG,
         *DET, *VIDEO, *ONNX]

if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmpetl',
        version=get_version(),
        description='Parameter-efficient transfer learning (RepAdapter, ARC, '
        'E3VA and baselines) for the OpenMMLab 2.x stack',
        long_description=readme(),
        long_description_content_type='text/markdown',
        author='mmpetl contributors',
        keywords='computer vision, parameter-efficient transfer learning, '
        'adapters, re-parameterization, openmmlab',
        license='Apache-2.0',
        license_files=['LICENSE'],
        classifiers=[
            'Development Status :: 4 - Beta',
            'Intended Audience :: Developers',
            'Intended Audience :: Science/Research',
            'Operating System :: OS Independent',
            'Programming Language :: Python :: 3',
            'Programming Language :: Python :: 3 :: Only',
            'Programming Language :: Python :: 3.10',
            'Programming Language :: Python :: 3.11',
            'Programming Language :: Python :: 3.12',
            'Topic :: Scientific/Engineering :: Artificial Intelligence',
            'Topic :: Scientific/Engineering :: Image Recognition',
        ],
        packages=find_packages(include=['mmpetl', 'mmpetl.*']),
        py_modules=['_mmpetl_bases'],
        cmdclass={
            'build_py': BuildPyWithPth,
            'editable_wheel': EditableWheelWithPth
        },
        # mmpetl/.mim (MANIFEST.in): configs, tools, model-index.yml.
        include_package_data=True,
        # The pinned torch (tools/setup_env.sh) needs 3.10.
        python_requires='>=3.10',
        install_requires=[
            'torch', 'torchvision', 'mmengine>=0.10.0,<0.11',
            'mmcv>=2.0.0,<2.2.0', 'mmpretrain>=1.2.0', 'numpy',
            # The demo's data (tools/demo.py: scikit-learn's digits).
            'scikit-learn',
            # mmengine resolves `_base_ = 'pkg::...'` with pkg_resources.
            'setuptools<82'
        ],
        extras_require={
            'seg': SEG,
            'det': DET,
            'dense': [*SEG, *DET],
            'video': VIDEO,
            'onnx': ONNX,
            'benchmark': BENCHMARK,
            'docs': DOCS,
            'mim': MIM,
            'tests': TESTS,
            'all': sorted({*SEG, *DET, *VIDEO, *ONNX}),
        },
        zip_safe=False,
    )
