from setuptools import find_packages, setup


def read_requirements(path: str) -> list:
    with open(path) as f:
        return [
            line.split('#')[0].strip() for line in f
            if line.split('#')[0].strip()
        ]


setup(
    name='mmdet_eakd',
    version='0.1.0',
    description='Entropy-based Adaptive Knowledge Distillation (EA-KD) for '
    'two-stage detectors in MMDetection 3.x',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'configs', 'tools')),
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
