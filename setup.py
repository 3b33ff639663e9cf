import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

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


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmpetl',
        version='0.1.0',
        description='Parameter-efficient transfer learning (RepAdapter, ARC, '
        'E3VA) for the OpenMMLab 2.x stack',
        packages=find_packages(include=['mmpetl', 'mmpetl.*']),
        # mmpetl/.mim (MANIFEST.in): configs, tools, model-index.yml.
        include_package_data=True,
        python_requires='>=3.8',
        install_requires=[
            'mmengine>=0.10.0,<0.11', 'mmcv>=2.0.0,<2.2.0',
            'mmpretrain>=1.2.0',
            # mmengine resolves `_base_ = 'pkg::...'` with pkg_resources.
            'setuptools<82'
        ],
        extras_require={
            'seg': ['mmsegmentation>=1.2.0', 'ftfy', 'regex'],
            'det': ['mmdet>=3.3.0'],
            'video': ['mmaction2>=1.2.0'],
            'tests': ['pytest', 'scikit-learn', 'scikit-image'],
            'onnx': ['onnx', 'onnxruntime'],
        },
        zip_safe=False,
    )
