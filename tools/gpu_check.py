#!/usr/bin/env python3
"""The offline GPU check: a bundle made with network access, one command on
an offline CUDA machine that installs the stack, builds mmcv's CUDA ops, runs
the CUDA tests, times the COCO pairs and trains under AMP, and writes a
Markdown and a JSON report.

Prepare the bundle (any machine with PyPI access; about 8 MiB)::

    python3 tools/gpu_check.py bundle            # -> gpu_bundle/ (git-ignored)

Copy the repository with ``gpu_bundle/`` to the CUDA machine, then::

    python3 tools/gpu_check.py run --report-dir gpu_report

Dry run on a CPU machine (what the test suite runs): the same stages without
the CUDA parts. The bundle is installed with ``--no-index`` into a fresh
Python 3.12 environment, the mmcv build is skipped, the tests run (the CUDA
ones skip), the benchmark and the training run on the CPU on tiny synthetic
configs, and the report is written::

    python3 tools/gpu_check.py run --dry-run --report-dir /tmp/gpu_report

This file uses the standard library only: it runs before mmcv, mmengine and
mmdet exist on the target machine, so it cannot import this package. Every
stage after the install calls the package's own tools (pytest,
``tools/benchmark_distill.py``, ``tools/train.py``) in a subprocess.
"""
import argparse
import email.parser
import glob
import hashlib
import html.parser
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
BUNDLE_REQUIREMENTS = ROOT / 'requirements' / 'gpu_bundle.txt'
IMAGE_REQUIREMENTS = ROOT / 'requirements' / 'gpu_image.txt'
DEFAULT_BUNDLE = ROOT / 'gpu_bundle'
MMCV_VERSION = '2.1.0'
MMCV_SDIST = f'mmcv-{MMCV_VERSION}.tar.gz'
#: The target of the bundle: the CUDA image's interpreter and platform.
TARGET_PYTHON = '3.12'
TARGET_PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_17_x86_64',
                    'manylinux2014_x86_64')
#: The marker environment of the target, to evaluate requirement markers.
TARGET_MARKERS = dict(
    python_version=TARGET_PYTHON, python_full_version=f'{TARGET_PYTHON}.3',
    sys_platform='linux', platform_system='Linux', os_name='posix',
    platform_machine='x86_64', implementation_name='cpython',
    platform_python_implementation='CPython', extra='')
#: Distributions that satisfy a requirement under another name.
ALIASES = {'opencv-python': ('opencv-python', 'opencv-python-headless')}
#: The bundle must stay well under the 64 MiB that travel with a repository.
MAX_BUNDLE_MIB = 32
#: The COCO zoo pairs timed on the GPU (mmdet's 1333x800 scale, batch 2).
ZOO_PAIRS = ('configs/eakd_frcnn_r101_r18.py', 'configs/eakd_frcnn_r50_mv2.py',
             'configs/eakd_gfl_r101_r18.py')
#: Their dry-run stand-ins: the synthetic twins, tiny images, on the CPU.
DRY_PAIRS = ('configs/synthetic/eakd_frcnn_teacher_tiny_synthetic.py',
             'configs/synthetic/eakd_gfl_teacher_tiny_synthetic.py')
BENCH_VARIANTS = ('student', 'teacher_forward', 'kd', 'eakd')
#: A pair with named terms (cls: EA-KD, box: EA-LD, feat: EA-PKD), timed per
#: term and all together (no teacher option), and its dry-run stand-in.
ZOO_TERMS_PAIR = 'configs/eakd_eald_eapkd_gfl_r101_r18.py'
DRY_TERMS_PAIR = 'configs/synthetic/eakd_eald_eapkd_gfl_teacher_tiny_synthetic.py'
TERMS_VARIANTS = ('student', 'teacher_forward', 'term:cls', 'term:box',
                  'term:feat', 'terms')
#: The tests that need CUDA (they skip on a CPU).
CUDA_TESTS = ('tests/test_cuda.py',
              'tests/test_distiller.py::test_amp_optim_wrapper_step')
TRAIN_CONFIG = 'configs/synthetic/eakd_frcnn_teacher_tiny_synthetic.py'


def canonical(name: str) -> str:
    """PEP 503 name."""
    return re.sub(r'[-_.]+', '-', name).lower()


def requirement_names(path: Path) -> List[str]:
    """The requirement lines of a requirements file (comments dropped)."""
    lines = (line.split('#', 1)[0].strip()
             for line in path.read_text().splitlines())
    return [line for line in lines if line]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------
# bundle
# --------------------------------------------------------------------------
class _Links(html.parser.HTMLParser):
    """The ``href`` of every anchor of a PEP 503 simple-index page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: List[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == 'a':
            self.hrefs += [value for key, value in attrs if key == 'href']


def fetch_sdist(name: str, filename: str, out_dir: Path,
                index_url: str) -> Path:
    """Download ``filename`` of project ``name`` from a PEP 503 index.

    pip cannot download mmcv's sdist without building its metadata, which
    imports torch; the index page gives the file and its sha256, which is
    checked.
    """
    target = out_dir / filename
    page_url = f'{index_url.rstrip("/")}/{canonical(name)}/'
    with urllib.request.urlopen(page_url, timeout=60) as response:
        links = _Links()
        links.feed(response.read().decode())
    for href in links.hrefs:
        url, _, fragment = href.partition('#')
        if url.rsplit('/', 1)[-1] != filename:
            continue
        expected = dict(urllib.parse.parse_qsl(fragment)).get('sha256')
        if not target.is_file() or (expected and sha256(target) != expected):
            tmp = target.with_suffix('.part')
            with urllib.request.urlopen(urllib.parse.urljoin(page_url, url),
                                        timeout=300) as response, \
                    open(tmp, 'wb') as f:
                shutil.copyfileobj(response, f)
            tmp.replace(target)
        if expected and sha256(target) != expected:
            raise RuntimeError(f'{filename}: sha256 mismatch with {page_url}')
        return target
    raise RuntimeError(f'{filename} is not listed on {page_url}; set '
                       'PIP_INDEX_URL to an index that has it.')


def make_bundle(out: Path) -> Dict:
    """Fetch the wheels and the mmcv sdist into ``out``; write its manifest."""
    wheels = out / 'wheels'
    wheels.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in TARGET_PLATFORMS for arg in ('--platform', p)]
    subprocess.run([
        sys.executable, '-m', 'pip', 'download', '--no-deps',
        '--only-binary=:all:', '--python-version', TARGET_PYTHON,
        '--implementation', 'cp', *platforms, '--dest', str(wheels),
        '--requirement', str(BUNDLE_REQUIREMENTS)
    ], check=True)
    wanted = {canonical(re.split(r'[=<>!~ ]', r)[0])
              for r in requirement_names(BUNDLE_REQUIREMENTS)}
    stale = [p for p in wheels.glob('*.whl')
             if canonical(p.name.split('-')[0]) not in wanted]
    for path in stale:  # left by an older requirements file
        path.unlink()
    index = os.environ.get('PIP_INDEX_URL', 'https://pypi.org/simple')
    fetch_sdist('mmcv', MMCV_SDIST, out, index)
    files = sorted([out / MMCV_SDIST] + sorted(wheels.glob('*.whl')))
    manifest = dict(
        target=dict(python=TARGET_PYTHON, platforms=list(TARGET_PLATFORMS)),
        files={str(p.relative_to(out)): dict(sha256=sha256(p),
                                             bytes=p.stat().st_size)
               for p in files})
    total = sum(f['bytes'] for f in manifest['files'].values())
    manifest['total_mib'] = round(total / 2**20, 2)
    if manifest['total_mib'] > MAX_BUNDLE_MIB:
        raise RuntimeError(f'The bundle is {manifest["total_mib"]} MiB, over '
                           f'{MAX_BUNDLE_MIB} MiB: check {BUNDLE_REQUIREMENTS}.')
    (out / 'manifest.json').write_text(json.dumps(manifest, indent=2))
    print(f'bundle: {len(files)} files, {manifest["total_mib"]} MiB in {out}')
    return manifest


def check_manifest(bundle: Path) -> Dict:
    """The bundle's manifest, after checking every file's sha256."""
    path = bundle / 'manifest.json'
    if not path.is_file():
        raise RuntimeError(f'{bundle} holds no manifest.json: make the bundle '
                           'with `python3 tools/gpu_check.py bundle` first.')
    manifest = json.loads(path.read_text())
    for name, meta in manifest['files'].items():
        if not (bundle / name).is_file():
            raise RuntimeError(f'{bundle / name} is missing; remake the bundle.')
        if sha256(bundle / name) != meta['sha256']:
            raise RuntimeError(f'{bundle / name} does not match the manifest.')
    return manifest


# --------------------------------------------------------------------------
# requirement closure
# --------------------------------------------------------------------------
def _packaging():
    """``packaging``'s Requirement class (pip's vendored copy if needed)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # a bare interpreter: pip vendors it
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def bundle_requirements(bundle: Path) -> Dict[str, Tuple[str, List[str]]]:
    """``name -> (version, Requires-Dist lines)`` of every bundled package:
    the wheels' METADATA and the mmcv sdist's PKG-INFO."""
    found = {}
    for wheel in sorted((bundle / 'wheels').glob('*.whl')):
        with zipfile.ZipFile(wheel) as archive:
            meta_name = next(n for n in archive.namelist()
                             if n.endswith('.dist-info/METADATA'))
            text = archive.read(meta_name).decode()
        meta = email.parser.Parser().parsestr(text)
        found[canonical(meta['Name'])] = (meta['Version'],
                                          meta.get_all('Requires-Dist') or [])
    with tarfile.open(bundle / MMCV_SDIST) as archive:
        member = archive.getmember(f'mmcv-{MMCV_VERSION}/PKG-INFO')
        meta = email.parser.Parser().parsestr(
            archive.extractfile(member).read().decode())
    requires = meta.get_all('Requires-Dist') or []
    if not requires:  # mmcv's PKG-INFO lists none: read its requirements
        with tarfile.open(bundle / MMCV_SDIST) as archive:
            member = archive.getmember(
                f'mmcv-{MMCV_VERSION}/requirements/runtime.txt')
            requires = [
                line.strip() for line in
                archive.extractfile(member).read().decode().splitlines()
                if line.strip() and not line.startswith('#')
            ]
    found['mmcv'] = (MMCV_VERSION, requires)
    return found


def missing_requirements(bundle: Path,
                         installed: Optional[Dict[str, str]]) -> List[str]:
    """Requirements of the bundled packages that nothing satisfies.

    Args:
        bundle: The bundle folder.
        installed: ``name -> version`` of the target environment with the
            bundle installed; None (dry run) trusts the image list
            (``requirements/gpu_image.txt``) for what the bundle lacks.

    Returns:
        list[str]: ``'<package> needs <requirement>'`` for each unmet one.
    """
    Requirement = _packaging()
    packages = bundle_requirements(bundle)
    available = {name: version for name, (version, _) in packages.items()}
    if installed is None:
        available.update({canonical(n): None
                          for n in requirement_names(IMAGE_REQUIREMENTS)})
    else:
        available.update(installed)
    problems = []
    for package, (_, requires) in sorted(packages.items()):
        for line in requires:
            req = Requirement(line)
            if req.marker and not req.marker.evaluate(TARGET_MARKERS):
                continue
            names = ALIASES.get(canonical(req.name), (canonical(req.name), ))
            versions = [available[n] for n in names if n in available]
            if not versions:
                problems.append(f'{package} needs {line} (not in the bundle '
                                'or the image)')
            elif all(v is not None and req.specifier
                     and not req.specifier.contains(v, prereleases=True)
                     for v in versions):
                problems.append(f'{package} needs {line}, found {versions}')
    return problems


# --------------------------------------------------------------------------
# run: stages
# --------------------------------------------------------------------------
@dataclass
class Stage:
    """One stage of the check, as reported."""
    name: str
    status: str = 'skipped'  # ok | failed | skipped
    seconds: float = 0.0
    details: Dict = field(default_factory=dict)


class Check:
    """The stages of ``run``, their shared paths, environment and report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dry = args.dry_run
        self.work = Path(args.work_dir).resolve()
        self.report_dir = Path(args.report_dir).resolve()
        self.bundle = Path(args.bundle).resolve()
        self.site = self.work / 'site'
        self.logs = self.work / 'logs'
        self.python = args.python
        self.deadline = time.monotonic() + args.budget_s
        self.stages: List[Stage] = []
        self.facts: Dict = {}

    # -- helpers -----------------------------------------------------------
    def env(self) -> Dict[str, str]:
        """The environment of the stack's subprocesses: the installed bundle
        (not in a dry run: its cp312 wheels are for the target) and the
        repository on the path."""
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        # the interpreter's own bin first: ninja (parallel builds) lives
        # there in a venv that is not activated
        env['PATH'] = os.pathsep.join([str(Path(self.python).parent),
                                       env.get('PATH', '')])
        paths = [str(ROOT)] if self.dry else [str(self.site), str(ROOT)]
        env['PYTHONPATH'] = os.pathsep.join(
            paths + [p for p in [os.environ.get('PYTHONPATH')] if p])
        return env

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def sh(self, cmd: Sequence[str], log: str, timeout: float,
           env: Optional[Dict[str, str]] = None,
           cwd: Optional[Path] = None) -> int:
        """Run ``cmd`` with its output in ``logs/<log>``; its exit status
        (124 when it ran past ``timeout`` seconds)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / log, 'a') as f:
            f.write(f'$ {" ".join(map(str, cmd))}\n')
            f.flush()
            try:
                return subprocess.run(
                    [str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT,
                    env=env or self.env(), cwd=cwd or ROOT,
                    timeout=max(timeout, 1)).returncode
            except subprocess.TimeoutExpired:
                f.write(f'\n[gpu_check] timed out after {timeout:.0f} s\n')
                return 124

    def py(self, code: str, timeout: float = 120) -> str:
        """Output of ``python -c code`` in the stack's environment."""
        return subprocess.run([self.python, '-c', code], env=self.env(),
                              cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=timeout).stdout

    def stage(self, name: str, function, *needs: str) -> Stage:
        """Run one stage unless a stage it needs did not succeed."""
        stage = Stage(name)
        self.stages.append(stage)
        failed = [s.name for s in self.stages
                  if s.name in needs and s.status != 'ok']
        if failed:
            stage.details['reason'] = f'needs {", ".join(failed)}'
            return stage
        if self.remaining() < 5:
            stage.details['reason'] = 'the time budget is spent'
            return stage
        print(f'[gpu_check] {name} ...', flush=True)
        start = time.monotonic()
        try:
            status = function(stage.details)
        except Exception as error:  # a stage's failure is reported, not fatal
            stage.details['error'] = f'{type(error).__name__}: {error}'
            status = 'failed'
        stage.status = status
        stage.seconds = round(time.monotonic() - start, 1)
        print(f'[gpu_check] {name}: {status} ({stage.seconds} s)', flush=True)
        self.write_report()
        return stage

    # -- stages ------------------------------------------------------------
    def environment(self, details: Dict) -> str:
        details['machine'] = dict(python=platform.python_version(),
                                  executable=self.python,
                                  cpus=os.cpu_count(), dry_run=self.dry)
        info = json.loads(self.py(
            'import json, torch\n'
            'c = torch.cuda.is_available()\n'
            'print(json.dumps(dict(torch=torch.__version__, '
            'torch_file=torch.__file__, cuda=torch.version.cuda, '
            'cuda_available=c, '
            'gpu=torch.cuda.get_device_name(0) if c else None, '
            'capability=list(torch.cuda.get_device_capability(0)) '
            'if c else None)))'))
        details['torch'] = info
        self.facts['torch'] = info
        details['ninja'] = self.py(
            'from torch.utils.cpp_extension import is_ninja_available; '
            'print(is_ninja_available())').strip() == 'True'
        nvcc = shutil.which('nvcc')
        if nvcc:
            out = subprocess.run([nvcc, '--version'], capture_output=True,
                                 text=True).stdout
            details['nvcc'] = out.strip().splitlines()[-1]
        if not self.dry and not info['cuda_available']:
            details['error'] = ('torch sees no CUDA device: run on a CUDA '
                                'machine, or pass --dry-run')
            return 'failed'
        if not self.dry and not nvcc:
            details['error'] = 'no nvcc on the PATH: mmcv\'s CUDA ops need it'
            return 'failed'
        if not self.dry and not details['ninja']:
            details['error'] = ('no ninja on the PATH: without it the mmcv '
                                'build compiles one file at a time')
            return 'failed'
        return 'ok'

    def install(self, details: Dict) -> str:
        manifest = check_manifest(self.bundle)
        details['bundle_mib'] = manifest['total_mib']
        wheels = sorted(glob.glob(str(self.bundle / 'wheels' / '*.whl')))
        installer, target_options = self.python, []
        if self.dry and not runs_python(self.args.install_python,
                                        TARGET_PYTHON):
            # no Python 3.12 here: pip installs the cp312 wheels for it
            platforms = [a for p in TARGET_PLATFORMS for a in ('--platform', p)]
            target_options = ['--python-version', TARGET_PYTHON,
                              '--implementation', 'cp', *platforms,
                              '--only-binary=:all:']
            details['fresh_env'] = (f'none ({self.args.install_python} is '
                                    f'no Python {TARGET_PYTHON} here): pip '
                                    f'--target for Python {TARGET_PYTHON}')
        elif self.dry:
            # a fresh environment of the target's Python, as on the machine
            venv = self.work / 'fresh-venv'
            base = self.args.install_python
            shutil.rmtree(venv, ignore_errors=True)
            if self.sh([base, '-m', 'venv', venv], 'install.log', 120):
                details['error'] = f'{base} -m venv failed'
                return 'failed'
            installer = str(venv / 'bin' / 'python')
            details['fresh_env'] = subprocess.run(
                [installer, '--version'], capture_output=True,
                text=True).stdout.strip()
        shutil.rmtree(self.site, ignore_errors=True)
        torch_before = None if self.dry else self.facts['torch']['torch_file']
        rc = self.sh([
            installer, '-m', 'pip', 'install', '--no-index', '--no-deps',
            '--no-compile', '--no-cache-dir', '--disable-pip-version-check',
            '--target', self.site, *target_options, *wheels
        ], 'install.log', self.remaining())
        if rc:
            details['error'] = f'pip install --no-index exited with {rc}'
            return 'failed'
        installed = sorted(p.name for p in self.site.glob('*.dist-info'))
        details['installed'] = installed
        if torch_before is not None:
            info = json.loads(self.py('import json, torch; print(json.dumps('
                                      'torch.__file__))'))
            details['torch_untouched'] = info == torch_before
            if info != torch_before:
                details['error'] = f'torch now imports from {info}'
                return 'failed'
            versions = json.loads(self.py(
                'import json, importlib.metadata as m\n'
                'print(json.dumps({d.metadata["Name"]: d.version '
                'for d in m.distributions()}))'))
            installed_versions = {canonical(k): v
                                  for k, v in versions.items()}
            # mmcv is built in the next stage
            installed_versions.setdefault('mmcv', MMCV_VERSION)
        else:
            installed_versions = None
        problems = missing_requirements(self.bundle, installed_versions)
        details['unmet_requirements'] = problems
        if problems and self.dry:  # the bundle itself is incomplete
            details['error'] = '; '.join(problems)
            return 'failed'
        if problems:  # the image differs from gpu_image.txt: the imports
            # of the next stages decide; the report names the difference
            details['reason'] = 'unmet: ' + '; '.join(problems)
        return 'ok'

    def build_mmcv(self, details: Dict) -> str:
        src = self.work / f'mmcv-{MMCV_VERSION}'
        shutil.rmtree(src, ignore_errors=True)
        with tarfile.open(self.bundle / MMCV_SDIST) as archive:
            archive.extractall(self.work, filter='data')
        details['patches'] = patch_mmcv_for_torch(src, self.torch_include())
        if self.dry:
            details['reason'] = ('dry run: the sdist unpacks and is patched; '
                                 'the CPU stack\'s mmcv is used')
            return 'ok'
        major, minor = self.facts['torch']['capability']
        arch = f'{major}.{minor}'
        jobs = str(os.cpu_count() or 1)
        details.update(arch=arch, max_jobs=jobs)
        env = dict(self.env(), FORCE_CUDA='1', MMCV_WITH_OPS='1',
                   TORCH_CUDA_ARCH_LIST=arch, MAX_JOBS=jobs)
        wheel_dir = self.work / 'mmcv-wheel'
        shutil.rmtree(wheel_dir, ignore_errors=True)
        start = time.monotonic()
        rc = self.sh([
            self.python, '-m', 'pip', 'wheel', '-v', '--no-index', '--no-deps',
            '--no-build-isolation', '--disable-pip-version-check',
            '--wheel-dir', wheel_dir, src
        ], 'mmcv_build.log', self.remaining() - 60, env=env)
        details['build_seconds'] = round(time.monotonic() - start, 1)
        if rc:
            details['first_errors'] = first_errors(self.logs /
                                                   'mmcv_build.log')
            details['error'] = (f'the mmcv build exited with {rc}' +
                                (' (timed out)' if rc == 124 else ''))
            return 'failed'
        rc = self.sh([
            self.python, '-m', 'pip', 'install', '--no-index', '--no-deps',
            '--no-compile', '--target', self.site, '--upgrade',
            *wheel_dir.glob('mmcv-*.whl')
        ], 'install.log', 300)
        if rc:
            details['error'] = f'installing the mmcv wheel exited with {rc}'
            return 'failed'
        return 'ok'

    def torch_include(self) -> Path:
        return Path(self.py(
            'from torch.utils.cpp_extension import include_paths; '
            'print(include_paths()[0])').strip())

    def stack(self, details: Dict) -> str:
        details.update(json.loads(self.py(
            'import json, mmcv, mmengine, mmdet, mmdet_eakd, torch\n'
            'from mmcv.ops import nms, RoIAlign  # compiled ops\n'
            'from mmcv.ops import get_compiling_cuda_version as v\n'
            'print(json.dumps(dict(mmcv=mmcv.__version__, '
            'mmcv_file=mmcv.__file__, mmcv_cuda=v(), '
            'mmengine=mmengine.__version__, mmdet=mmdet.__version__)))',
            timeout=300)))
        if not self.dry and details['mmcv_cuda'] in ('not available', None):
            details['error'] = 'mmcv was built without CUDA ops'
            return 'failed'
        return 'ok'

    def cuda_tests(self, details: Dict) -> str:
        junit = self.work / 'junit.xml'
        rc = self.sh([
            self.python, '-m', 'pytest', *CUDA_TESTS, '-p', 'no:cacheprovider',
            '-rA', '--junitxml', junit
        ], 'tests.log', min(self.remaining(), 300))
        details['tests'] = junit_results(junit)
        counts = {s: sum(1 for t in details['tests'].values() if t == s)
                  for s in ('passed', 'failed', 'skipped')}
        details['counts'] = counts
        if rc not in (0, ) or counts['failed']:
            details['error'] = f'pytest exited with {rc}'
            return 'failed'
        if not self.dry and counts['skipped']:
            details['error'] = 'CUDA tests skipped on a CUDA machine'
            return 'failed'
        return 'ok'

    def benchmark(self, details: Dict) -> str:
        out_dir = self.work / 'bench'
        out_dir.mkdir(parents=True, exist_ok=True)
        if self.dry:
            pairs, size, device, steps, warmup = DRY_PAIRS, '64x48', 'cpu', 5, 1
            terms_pair = DRY_TERMS_PAIR
        else:
            pairs, size, device, steps, warmup = (ZOO_PAIRS, '1333x800',
                                                  'cuda', 8, 2)
            terms_pair = ZOO_TERMS_PAIR
        details.update(img_size=size, batch_size=2, steps=steps,
                       warmup=warmup, teacher_autocast='fp16', results={})
        runs = [(config, [
            '--teacher-autocast', 'fp16', '--variants', *BENCH_VARIANTS,
            'teacher_forward_amp', 'eakd_amp'
        ]) for config in pairs] + [(terms_pair,
                                    ['--variants', *TERMS_VARIANTS])]
        failed, skipped = [], []
        for config, variant_args in runs:
            if self.remaining() < 90:
                skipped.append(config)
                continue
            out = out_dir / (Path(config).stem + '.json')
            rc = self.sh([
                self.python, 'tools/benchmark_distill.py', '--config', config,
                '--img-size', size, '--batch-size', '2', '--steps',
                str(steps), '--warmup', str(warmup), '--device', device,
                '--memory-steps', '0', *variant_args, '--json', out
            ], 'bench.log', min(self.remaining() - 10, 240))
            if rc:
                failed.append(f'{config} (exit {rc})')
                continue
            (result, ) = json.loads(out.read_text())['results']
            details['results'][config] = summarize_bench(result)
        if skipped:
            details['skipped_for_time'] = skipped
        if failed or skipped:
            details['error'] = ', '.join(
                [f'failed: {c}' for c in failed] +
                [f'not timed (time budget): {c}' for c in skipped])
            return 'failed'
        return 'ok'

    def train(self, details: Dict) -> str:
        """A synthetic EA-KD run under AmpOptimWrapper (not in a dry run:
        mmengine allows AMP on CUDA only), then the same run resumed from
        its middle checkpoint."""
        data = self.work / 'data'
        num_train, epochs, batch = (8, 2, 2) if self.dry else (50, 4, 2)
        iters = num_train // batch * epochs
        details.update(config=TRAIN_CONFIG, iterations=iters, epochs=epochs,
                       amp=not self.dry)
        rc = self.sh([
            self.python, '-m', 'mmdet_eakd.datasets.synthetic', '--out', data,
            '--num-train', str(num_train), '--num-val', '8'
        ], 'train.log', 300)
        if rc:
            details['error'] = f'generating the data exited with {rc}'
            return 'failed'
        teacher = self.work / 'teacher.pth'
        self.py('from mmengine.config import Config\n'
                'from mmdet_eakd.utils import write_random_teacher_checkpoint\n'
                f'write_random_teacher_checkpoint(Config.fromfile('
                f'{TRAIN_CONFIG!r}), {str(teacher)!r})', timeout=300)
        cfg = self.work / 'train_cfg.py'
        cfg.write_text(
            f"_base_ = '{ROOT / TRAIN_CONFIG}'\n"
            f"train_dataloader = dict(batch_size={batch}, "
            f"dataset=dict(data_root='{data}/'))\n"
            f"val_dataloader = dict(dataset=dict(data_root='{data}/'))\n"
            f"test_dataloader = dict(dataset=dict(data_root='{data}/'))\n"
            f"val_evaluator = dict(ann_file='{data}/annotations/"
            "instances_val.json')\n"
            "test_evaluator = val_evaluator\n"
            f"model = dict(teacher=dict(checkpoint='{teacher}'))\n"
            f'train_cfg = dict(max_epochs={epochs}, val_interval={epochs})\n'
            'default_hooks = dict(logger=dict(interval=1), '
            'checkpoint=dict(interval=1))\n'
            'randomness = dict(seed=0)\n')
        amp = [] if self.dry else ['--amp']
        full, resumed = self.work / 'train_full', self.work / 'train_resumed'
        for path in (full, resumed):
            shutil.rmtree(path, ignore_errors=True)
        start = time.monotonic()
        rc = self.sh([self.python, 'tools/train.py', cfg, '--work-dir', full,
                      *amp], 'train.log', min(self.remaining(), 300))
        details['train_seconds'] = round(time.monotonic() - start, 1)
        if rc:
            details['error'] = f'training exited with {rc}'
            return 'failed'
        middle = full / f'epoch_{epochs // 2}.pth'
        rc = self.sh([self.python, 'tools/train.py', cfg, '--work-dir', resumed,
                      '--resume', middle, *amp], 'train.log',
                     min(self.remaining(), 300))
        if rc:
            details['error'] = f'the resumed training exited with {rc}'
            return 'failed'
        details.update(compare_runs(full, resumed, epochs // 2, iters))
        details['optim_wrapper'] = self.py(
            'import torch, mmdet_eakd\n'
            f'c = torch.load({str(full / f"epoch_{epochs}.pth")!r}, '
            'map_location="cpu", weights_only=False)\n'
            'print(type(c["optimizer"]).__name__, "loss_scaler" in '
            'c["optimizer"])').strip()
        if not details['finite'] or not details['resumed_at_middle']:
            details['error'] = 'non-finite losses or a wrong resume point'
            return 'failed'
        if not self.dry and not details['optim_wrapper'].endswith('True'):
            details['error'] = 'the checkpoint holds no AMP loss scaler'
            return 'failed'
        return 'ok'

    # -- report ------------------------------------------------------------
    def write_report(self) -> None:
        self.report_dir.mkdir(parents=True, exist_ok=True)
        data = dict(
            date=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
            command=' '.join([Path(sys.argv[0]).name] + sys.argv[1:]),
            dry_run=self.dry,
            stages=[asdict(s) for s in self.stages])
        (self.report_dir / 'gpu_check.json').write_text(
            json.dumps(data, indent=2, default=str))
        (self.report_dir / 'gpu_check.md').write_text(markdown(data))
        for log in ('mmcv_build.log', 'tests.log', 'bench.log', 'train.log'):
            if (self.logs / log).is_file():  # the tail: logs can be large
                text = (self.logs / log).read_text(errors='replace')
                (self.report_dir / log).write_text(text[-200_000:])

    def run(self) -> int:
        self.work.mkdir(parents=True, exist_ok=True)
        self.stage('environment', self.environment)
        self.stage('install', self.install, 'environment')
        self.stage('build_mmcv', self.build_mmcv, 'install')
        self.stage('stack', self.stack, 'build_mmcv')
        self.stage('cuda_tests', self.cuda_tests, 'stack')
        # the benchmark last: it takes whatever time is left, per pair
        self.stage('train_amp_resume', self.train, 'stack')
        self.stage('benchmark', self.benchmark, 'stack')
        self.write_report()
        failed = [s.name for s in self.stages if s.status != 'ok']
        print(f'[gpu_check] report: {self.report_dir / "gpu_check.md"}')
        if failed:
            print(f'[gpu_check] not ok: {", ".join(failed)}')
        return 1 if failed else 0


# --------------------------------------------------------------------------
# pieces the stages use
# --------------------------------------------------------------------------
def patch_mmcv_for_torch(src: Path, torch_include: Path) -> List[str]:
    """Make mmcv 2.1.0's CUDA sources build against a torch without the THC
    compatibility headers.

    ``THC/THCAtomics.cuh`` was a shim that included ``ATen/cuda/Atomic.cuh``
    (``atomicAdd`` / ``gpuAtomicAdd`` for half and bfloat16); newer torch
    ships only the latter, so the include is pointed there. Nothing changes
    where torch still has the shim. Returns the patched files.
    """
    if (torch_include / 'THC' / 'THCAtomics.cuh').is_file():
        return []
    patched = []
    for path in sorted(src.glob('mmcv/ops/csrc/**/*')):
        if path.suffix not in ('.cu', '.cuh', '.hpp', '.h', '.cpp'):
            continue
        text = path.read_text()
        if '<THC/THCAtomics.cuh>' in text:
            path.write_text(text.replace('<THC/THCAtomics.cuh>',
                                         '<ATen/cuda/Atomic.cuh>'))
            patched.append(str(path.relative_to(src)))
    return patched


def runs_python(python: str, version: str) -> bool:
    """Whether ``python`` runs here and is Python ``version`` (a pyenv
    shim of a version that is not activated exits with an error)."""
    try:
        out = subprocess.run(
            [python, '-c', 'import sys; print("%d.%d" % sys.version_info[:2])'],
            capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def first_errors(log: Path, count: int = 20) -> List[str]:
    """The first compiler error lines of a build log."""
    pattern = re.compile(r'(error:|error\b.*:|\berror [A-Z]?\d+|fatal error)',
                         re.IGNORECASE)
    lines = log.read_text(errors='replace').splitlines()
    return [line.strip()[:400] for line in lines if pattern.search(line)][:count]


def junit_results(path: Path) -> Dict[str, str]:
    """``test id -> passed | failed | skipped`` from a JUnit XML file."""
    if not path.is_file():
        return {}
    results = {}
    for case in ET.parse(path).getroot().iter('testcase'):
        name = f'{case.get("classname")}::{case.get("name")}'
        if case.find('skipped') is not None:
            results[name] = 'skipped'
        elif case.find('failure') is not None or case.find(
                'error') is not None:
            results[name] = 'failed'
        else:
            results[name] = 'passed'
    return results


def summarize_bench(result: Dict) -> Dict:
    """The figures of one benchmark_distill result that the report shows."""
    return dict(
        teacher=result['teacher'],
        num_samples=result['num_rois'],
        median_s={k: v['median_s'] for k, v in result['variants'].items()},
        peak_memory_mib={k: v['peak_memory_mib']
                         for k, v in result['variants'].items()},
        ratios={k: [v, *result['ratio_intervals'][k]]
                for k, v in result['ratios'].items()
                if k != 'memory_over_student'})


def scalars(work_dir: Path) -> List[Dict]:
    """The training records of every run under ``work_dir``."""
    records = []
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        records += [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if 'loss' in r]


def compare_runs(full: Path, resumed: Path, middle_epoch: int,
                 iters: int) -> Dict:
    """The uninterrupted run against the one resumed at ``middle_epoch``:
    where the resumed run started (its first global ``step``), and its
    losses at the same steps."""
    import math
    full_records = {r['step']: r for r in scalars(full)}
    resumed_records = scalars(resumed)
    first = min((r['step'] for r in resumed_records), default=None)
    pairs = [(full_records[r['step']]['loss'], r['loss'])
             for r in resumed_records if r['step'] in full_records]
    per_epoch = iters // (2 * middle_epoch)
    return dict(
        last_step=max(full_records, default=None),
        resumed_first_step=first,
        resumed_at_middle=first == middle_epoch * per_epoch + 1,
        finite=bool(full_records) and all(
            math.isfinite(r['loss'])
            for r in list(full_records.values()) + resumed_records),
        final_loss_full=full_records[max(full_records)]['loss']
        if full_records else None,
        final_loss_resumed=resumed_records[-1]['loss']
        if resumed_records else None,
        max_abs_loss_diff_after_resume=max(
            (abs(a - b) for a, b in pairs), default=None),
        loss_kd_logged=bool(resumed_records)
        and 'loss_kd' in resumed_records[-1])


def markdown(data: Dict) -> str:
    """The human report."""
    lines = [f'# GPU check ({"dry run" if data["dry_run"] else "CUDA"})', '',
             f'{data["date"]}; `{data["command"]}`', '',
             '| stage | status | seconds | note |', '|---|---|---|---|']
    for s in data['stages']:
        d = s['details']
        note = d.get('error') or d.get('reason') or ''
        lines.append(f'| {s["name"]} | {s["status"]} | {s["seconds"]} | '
                     f'{str(note)[:300]} |')
    for s in data['stages']:
        d = s['details']
        if s['name'] == 'environment' and 'torch' in d:
            t = d['torch']
            lines += ['', f'torch {t["torch"]} (CUDA {t["cuda"]}), GPU '
                      f'{t["gpu"]}, capability {t["capability"]}, '
                      f'{d.get("nvcc", "no nvcc")}, '
                      f'{d["machine"]["cpus"]} CPUs, Python '
                      f'{d["machine"]["python"]}']
        if s['name'] == 'build_mmcv' and 'build_seconds' in d:
            lines += ['', f'mmcv {MMCV_VERSION} CUDA ops built for '
                      f'sm_{d["arch"].replace(".", "")} with MAX_JOBS='
                      f'{d["max_jobs"]} in {d["build_seconds"]} s; patched: '
                      f'{d["patches"] or "nothing"}']
            if d.get('first_errors'):
                lines += ['', '```'] + d['first_errors'] + ['```']
        if s['name'] == 'cuda_tests' and d.get('tests'):
            lines += ['', '| test | result |', '|---|---|']
            lines += [f'| `{k}` | {v} |' for k, v in d['tests'].items()]
        if s['name'] == 'benchmark' and d.get('results'):
            lines += ['', f'Benchmark: batch {d["batch_size"]} x '
                      f'{d["img_size"]} (WxH), median of {d["steps"]} '
                      f'interleaved steps after {d["warmup"]} warm-up rounds; '
                      '`_amp`: teacher_autocast fp16', '']
            for config, r in d['results'].items():
                lines += [f'**{config}** (teacher {r["teacher"]}, '
                          f'{r["num_samples"]} distilled samples)', '',
                          '| variant | median s | peak MiB |', '|---|---|---|']
                for k, v in r['median_s'].items():
                    mem = r['peak_memory_mib'][k]
                    lines.append(f'| {k} | {v:.4f} | '
                                 f'{"-" if mem is None else f"{mem:.0f}"} |')
                lines += ['', '| ratio | value [95% interval] |', '|---|---|']
                lines += [f'| {k} | {v:.3f} [{lo:.3f}, {hi:.3f}] |'
                          for k, (v, lo, hi) in r['ratios'].items()]
                lines.append('')
        if s['name'] == 'train_amp_resume' and 'iterations' in d:
            lines += ['', 'Training: ' + ', '.join(
                f'{k} {v}' for k, v in d.items() if k != 'error')]
    return '\n'.join(lines) + '\n'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    bundle = sub.add_parser('bundle', help='fetch the offline bundle')
    bundle.add_argument('--out', default=str(DEFAULT_BUNDLE))
    run = sub.add_parser('run', help='install, build, test, time, report')
    run.add_argument('--report-dir', required=True,
                     help='where gpu_check.md / gpu_check.json are written')
    run.add_argument('--bundle', default=str(DEFAULT_BUNDLE))
    run.add_argument('--work-dir', default='/tmp/eakd-gpu-check',
                     help='install target, mmcv build, logs, runs')
    run.add_argument('--python', default=sys.executable,
                     help='the interpreter with torch (default: this one)')
    run.add_argument('--dry-run', action='store_true',
                     help='CPU: skip the mmcv build and the CUDA parts')
    run.add_argument('--install-python', default='python3.12',
                     help='dry run: the Python whose fresh venv installs '
                     'the bundle (default: %(default)s)')
    run.add_argument('--budget-s', type=float, default=570,
                     help='stop starting stages after this many seconds')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.command == 'bundle':
        make_bundle(Path(args.out).resolve())
        return 0
    return Check(args).run()


if __name__ == '__main__':
    sys.exit(main())
