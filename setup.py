from setuptools import find_packages, setup

setup(
    name='mmpetl',
    version='0.1.0',
    description='Parameter-efficient transfer learning (RepAdapter, ARC, E3VA) '
    'for the OpenMMLab 2.x stack',
    packages=find_packages(include=['mmpetl', 'mmpetl.*']),
    include_package_data=True,
    python_requires='>=3.8',
    install_requires=[
        'mmengine>=0.10.0,<0.11', 'mmcv>=2.0.0,<2.2.0', 'mmpretrain>=1.2.0',
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
)
