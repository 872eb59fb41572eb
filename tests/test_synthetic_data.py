"""Tests of the embedded synthetic COCO data set (mmdet_eakd.datasets.synthetic)."""
import colorsys
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from mmdet_eakd.datasets import CLASSES, generate_synthetic_coco
from mmdet_eakd.datasets.synthetic import FAMILIES
from mmdet_eakd.datasets import synthetic

REPO_ROOT = Path(__file__).resolve().parents[1]
NUM_TRAIN, NUM_VAL, IMG_SIZE = 120, 40, 160


def _files(root: Path) -> Dict[str, bytes]:
    """All files under ``root`` by relative path."""
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob('*')) if p.is_file()}


def _mtimes(root: Path) -> Dict[str, int]:
    """Modification times (ns) of all files under ``root``."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns
            for p in root.rglob('*') if p.is_file()}


def _box_iou(a: List[float], b: List[float]) -> float:
    """IoU of two COCO [x, y, w, h] boxes."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """A medium-sized data set shared by the content tests."""
    return generate_synthetic_coco(tmp_path_factory.mktemp('synthetic'),
                                   num_train=NUM_TRAIN, num_val=NUM_VAL,
                                   img_size=IMG_SIZE, seed=0)


@pytest.fixture(scope='module')
def train_coco(dataset: Dict[str, Any]) -> COCO:
    """The training split loaded by pycocotools."""
    return COCO(dataset['train_ann_file'])


def test_result_and_layout(dataset: Dict[str, Any]) -> None:
    root = Path(dataset['root'])
    assert dataset['generated'] is True
    assert dataset['classes'] == CLASSES and len(CLASSES) == 8
    coco = json.loads(Path(dataset['train_ann_file']).read_text())
    families = {c['name']: c['supercategory'] for c in coco['categories']}
    assert families == {name: family for family, members in FAMILIES.items()
                        for name in members}
    assert set(families.values()) == {'round', 'box', 'wedge', 'cross'}
    assert dataset['num_train_images'] == NUM_TRAIN
    assert dataset['num_val_images'] == NUM_VAL
    assert len(list((root / 'train').glob('*.png'))) == NUM_TRAIN
    assert len(list((root / 'val').glob('*.png'))) == NUM_VAL
    manifest = json.loads((root / synthetic.MANIFEST_NAME).read_text())
    assert manifest['status'] == 'complete'


@pytest.mark.parametrize('split', ['train', 'val'])
def test_valid_coco(dataset: Dict[str, Any], split: str) -> None:
    coco = COCO(dataset[f'{split}_ann_file'])
    assert coco.getCatIds() == list(range(1, len(CLASSES) + 1))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert len(coco.getImgIds()) == dataset[f'num_{split}_images']
    assert len(coco.getAnnIds()) == dataset[f'num_{split}_annotations']
    for img in coco.loadImgs(coco.getImgIds()):
        with Image.open(Path(dataset[f'{split}_img_dir']) / img['file_name']) as im:
            assert im.size == (img['width'], img['height']) == (IMG_SIZE, IMG_SIZE)
            assert im.mode == 'RGB'
    for ann in coco.loadAnns(coco.getAnnIds()):
        x, y, w, h = ann['bbox']
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= IMG_SIZE and y + h <= IMG_SIZE
        assert ann['iscrowd'] == 0 and 1 <= ann['category_id'] <= len(CLASSES)
        assert 0 < ann['area'] <= w * h
        assert coco.annToMask(ann).sum() > 0  # the polygon is accepted


def test_objects_per_image(train_coco: COCO) -> None:
    counts = Counter(len(train_coco.getAnnIds(imgIds=i)) for i in train_coco.getImgIds())
    assert set(counts) <= set(range(1, 7))
    assert len(counts) >= 5


def test_size_distribution(train_coco: COCO) -> None:
    areas = np.array([a['area'] for a in train_coco.loadAnns(train_coco.getAnnIds())])
    small, medium = (areas < 32**2).mean(), ((areas >= 32**2) & (areas < 96**2)).mean()
    assert small > 0.2 and medium > 0.4, (small, medium)
    sides = [max(a['bbox'][2:]) for a in train_coco.loadAnns(train_coco.getAnnIds())]
    assert 10 - 0.01 <= min(sides) < 20 and 60 < max(sides) <= 70 + 0.01


def test_class_balance(train_coco: COCO) -> None:
    labels = Counter(a['category_id'] for a in train_coco.loadAnns(train_coco.getAnnIds()))
    cats = range(1, len(CLASSES) + 1)
    fractions = np.array([labels[c] for c in cats]) / sum(labels.values())
    uniform = 1 / len(CLASSES)
    assert fractions.min() > 0.6 * uniform and fractions.max() < 1.5 * uniform, \
        fractions


def test_overlap_and_visibility(train_coco: COCO) -> None:
    """Some boxes overlap, and no object is more than ~60% occluded."""
    overlapping = 0
    for img_id in train_coco.getImgIds():
        anns = train_coco.loadAnns(train_coco.getAnnIds(imgIds=img_id))
        overlapping += any(_box_iou(a['bbox'], b['bbox']) > 0.05
                           for i, a in enumerate(anns) for b in anns[:i])
        # Annotations are in drawing order: later ones are on top.
        covered = np.zeros((IMG_SIZE, IMG_SIZE), dtype=bool)
        for ann in reversed(anns):
            mask = train_coco.annToMask(ann).astype(bool)
            # 0.35 instead of 0.4: pycocotools rasterises a bit differently.
            assert (mask & ~covered).sum() >= 0.35 * mask.sum()
            covered |= mask
    assert overlapping >= 0.25 * NUM_TRAIN


def test_colour_does_not_determine_class(dataset: Dict[str, Any],
                                         train_coco: COCO) -> None:
    """Measure each object's colour in the image: every class has many hues."""
    colours, labels = [], []
    for img in train_coco.loadImgs(train_coco.getImgIds()):
        pixels = np.asarray(Image.open(Path(dataset['train_img_dir']) / img['file_name']))
        anns = train_coco.loadAnns(train_coco.getAnnIds(imgIds=img['id']))
        covered = np.zeros(pixels.shape[:2], dtype=bool)
        for ann in reversed(anns):
            mask = train_coco.annToMask(ann).astype(bool)
            visible = mask & ~covered
            covered |= mask
            interior = visible.copy()  # erode by 2 px to skip edges and outlines
            for _ in range(2):
                interior[1:-1, 1:-1] &= (interior[:-2, 1:-1] & interior[2:, 1:-1] &
                                         interior[1:-1, :-2] & interior[1:-1, 2:])
            if interior.sum() >= 10:
                colours.append(np.median(pixels[interior], axis=0))
                labels.append(ann['category_id'])
    colours, labels = np.array(colours), np.array(labels)
    hsv = np.array([colorsys.rgb_to_hsv(*(c / 255.0)) for c in colours])
    cats = range(1, len(CLASSES) + 1)
    for cat in cats:
        sel = (labels == cat) & (hsv[:, 1] > 0.2)
        hue_bins = set((hsv[sel, 0] * 12).astype(int) % 12)
        assert len(hue_bins) >= 9, (CLASSES[cat - 1], sorted(hue_bins))
    # A nearest-class-mean classifier on colour is close to chance (1 / 8).
    means = np.stack([colours[labels == c].mean(axis=0) for c in cats])
    pred = np.argmin(((colours[:, None] - means[None]) ** 2).sum(-1), axis=1) + 1
    assert (pred == labels).mean() < 1.6 / len(CLASSES)


def test_deterministic_and_independent_of_count(tmp_path: Path,
                                                dataset: Dict[str, Any]) -> None:
    a = generate_synthetic_coco(tmp_path / 'a', num_train=5, num_val=3, seed=0)
    b = generate_synthetic_coco(tmp_path / 'b', num_train=5, num_val=3, seed=0)
    files_a, files_b = _files(Path(a['root'])), _files(Path(b['root']))
    assert files_a == files_b
    assert sum(name.endswith('.png') for name in files_a) == 8
    # Per-image RNG: the first images equal those of the larger set.
    big = Path(dataset['train_img_dir'])
    for name in ('000000.png', '000004.png'):
        assert files_a[f'train/{name}'] == (big / name).read_bytes()
    assert files_a['val/000000.png'] == (Path(dataset['val_img_dir']) /
                                         '000000.png').read_bytes()
    c = generate_synthetic_coco(tmp_path / 'c', num_train=5, num_val=3, seed=1)
    assert (Path(c['train_img_dir']) / '000000.png').read_bytes() != \
        files_a['train/000000.png']


def test_idempotent(tmp_path: Path) -> None:
    first = generate_synthetic_coco(tmp_path, num_train=4, num_val=2)
    before = _mtimes(tmp_path)
    second = generate_synthetic_coco(tmp_path, num_train=4, num_val=2)
    assert first['generated'] and not second['generated']
    assert _mtimes(tmp_path) == before
    assert {k: v for k, v in first.items() if k != 'generated'} == \
        {k: v for k, v in second.items() if k != 'generated'}


def test_parameter_mismatch(tmp_path: Path) -> None:
    generate_synthetic_coco(tmp_path, num_train=4, num_val=2)
    before = _mtimes(tmp_path)
    with pytest.raises(FileExistsError, match=r'num_val: existing=2, requested=3.*overwrite'):
        generate_synthetic_coco(tmp_path, num_train=4, num_val=3)
    assert _mtimes(tmp_path) == before
    result = generate_synthetic_coco(tmp_path, num_train=4, num_val=3, overwrite=True)
    assert result['generated'] and result['num_val_images'] == 3
    assert len(list((tmp_path / 'val').glob('*.png'))) == 3


def test_interrupted_run_is_regenerated(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    render = synthetic._render_image
    calls = []

    def crash_on_third(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return render(*args)

    monkeypatch.setattr(synthetic, '_render_image', crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_coco(tmp_path, num_train=4, num_val=2)
    monkeypatch.setattr(synthetic, '_render_image', render)
    manifest = json.loads((tmp_path / synthetic.MANIFEST_NAME).read_text())
    assert manifest['status'] == 'incomplete'
    result = generate_synthetic_coco(tmp_path, num_train=4, num_val=2)
    assert result['generated'] and len(list((tmp_path / 'train').glob('*.png'))) == 4
    # A deleted image is detected too.
    (tmp_path / 'train' / '000001.png').unlink()
    assert generate_synthetic_coco(tmp_path, num_train=4, num_val=2)['generated']
    assert (tmp_path / 'train' / '000001.png').is_file()


def test_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / 'train').mkdir()
    (tmp_path / 'train' / 'mine.jpg').write_bytes(b'x')
    (tmp_path / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='not written by this generator'):
        generate_synthetic_coco(tmp_path, num_train=2, num_val=1)
    generate_synthetic_coco(tmp_path, num_train=2, num_val=1, overwrite=True)
    assert not (tmp_path / 'train' / 'mine.jpg').exists()
    assert (tmp_path / 'notes.txt').read_text() == 'keep me'


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_train=0), 'must be positive'),
    (dict(num_val=-1), 'must be positive'),
    (dict(img_size=64), 'too small'),
    (dict(seed=-1), 'seed'),
    (dict(num_train=2.5), 'integer'),
])
def test_invalid_parameters(tmp_path: Path, kwargs: Dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_synthetic_coco(tmp_path / 'out', **kwargs)
    assert not (tmp_path / 'out').exists()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = str(tmp_path / 'cli')
    args = ['--out', out, '--num-train', '3', '--num-val', '2', '--seed', '7']
    assert synthetic.main(args) == 0
    assert 'Wrote' in capsys.readouterr().out
    assert synthetic.main(args) == 0
    assert 'Up to date' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        synthetic.main(args[:-1] + ['8'])
    assert exc.value.code == 1 and '--overwrite' in capsys.readouterr().err
    assert synthetic.main(args[:-1] + ['8', '--overwrite']) == 0
    for bad in (['--num-train', '0'], ['--img-size', '50']):
        with pytest.raises(SystemExit) as exc:
            synthetic.main(['--out', out] + bad)
        assert exc.value.code == 2 and 'error' in capsys.readouterr().err


def test_cli_module_subprocess(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, '-m', 'mmdet_eakd.datasets.synthetic', '--out',
         str(tmp_path), '--num-train', '2', '--num-val', '1'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert 'found in sys.modules' not in proc.stderr, proc.stderr  # runpy warning
    assert 'train: 2 images' in proc.stdout
    assert (tmp_path / 'annotations' / 'instances_val.json').is_file()


def test_mmdet_coco_dataset_loads(dataset: Dict[str, Any]) -> None:
    """mmdet's CocoDataset reads the training split with all its instances."""
    from mmengine.registry import init_default_scope
    from mmdet.datasets import CocoDataset
    init_default_scope('mmdet')
    ds = CocoDataset(
        data_root=dataset['root'], ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'), metainfo=dict(classes=CLASSES),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True)])
    assert len(ds) == NUM_TRAIN
    per_class: Dict[int, int] = defaultdict(int)
    total = 0
    for i in range(len(ds)):
        item = ds[i]
        assert item['img'].shape == (IMG_SIZE, IMG_SIZE, 3)
        total += len(item['gt_bboxes'])
        for label in item['gt_bboxes_labels']:
            per_class[int(label)] += 1
    assert total == dataset['num_train_annotations']
    assert sorted(per_class) == list(range(len(CLASSES)))


def test_hollow_shapes_have_a_hole(dataset: Dict[str, Any],
                                   train_coco: COCO) -> None:
    """A hollow shape shows what lies below at its centre; a filled one not."""
    gaps = defaultdict(list)
    for img in train_coco.loadImgs(train_coco.getImgIds()):
        anns = train_coco.loadAnns(train_coco.getAnnIds(imgIds=img['id']))
        top = anns[-1]  # drawn last: nothing covers it
        if top['area'] < 900:
            continue
        pixels = np.asarray(Image.open(
            Path(dataset['train_img_dir']) / img['file_name']), dtype=float)
        poly = np.array(top['segmentation'][0]).reshape(-1, 2)
        cx, cy = np.round(poly.mean(axis=0)).astype(int)
        x, y, w, h = np.array(top['bbox']).astype(int)
        body = pixels[y + h // 2 - 1:y + h // 2 + 2, x + 2:x + 5]  # near the edge
        centre = pixels[cy - 1:cy + 2, cx - 1:cx + 2]
        name = train_coco.loadCats(top['category_id'])[0]['name']
        gaps[name in synthetic.HOLLOW].append(
            float(np.linalg.norm(np.median(centre.reshape(-1, 3), 0) -
                                 np.median(body.reshape(-1, 3), 0))))
    assert len(gaps[True]) >= 5 and len(gaps[False]) >= 5, gaps
    # The hole shows the background, which contrasts with the shape's colour.
    assert np.median(gaps[True]) > 60 > np.median(gaps[False]), gaps
