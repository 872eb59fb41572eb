"""Deterministic generator of a small synthetic COCO-format detection data set.

The data set is meant for tests and CPU studies: a small Faster R-CNN learns it in
a few minutes to a meaningful (neither ~0 nor ~100) COCO AP, and a larger one
learns it much better (the neighbours of a family differ in details that small
models confuse), so a teacher has something to teach.

What an image contains (``img_size`` x ``img_size`` RGB, 160 px by default):

* **Background**: a linear gradient between two random colours, low-frequency
  colour blotches and per-pixel Gaussian noise (sigma 2-9).
* **Clutter that is not an object**: 1-4 soft, blurred blobs, 1-6 straight
  lines or two-segment polylines under the objects and, in half of the images,
  1-2 thin lines drawn over them.
* **1-6 objects** of the 8 classes in :data:`CLASSES`, four families of two
  (:data:`FAMILIES`): circle / ring, square / frame, triangle / hollow
  triangle, cross / hollow cross (the hollow one has a hole of 40-60 % of its
  size, through which what lies below shows). Filled shapes are drawn with a
  darker or lighter outline in a third of the cases; every shape is randomly
  rotated and stretched (aspect 0.8-1.25).
  The longer side of an object's box is 10-70 px (density rising linearly
  with the size), so about a third of the objects are COCO *small*
  (area < 32^2) and the rest *medium*. Colours are drawn
  independently of the class (random hue, saturation 0.25-1, value 0.3-1,
  re-drawn for contrast against the local background), so the class can only
  be told from the shape.
* **Overlap**: about a third of the objects after the first are placed next to
  an earlier one so that they overlap partially. A placement that would leave any object less
  than 40 % visible (i.e. more than 60 % occluded) is rejected and re-drawn, so
  every shape in an image is labelled and learnable; an image keeps fewer
  objects when no valid placement is found.

Annotations (``annotations/instances_{train,val}.json``):

* ``bbox`` is the full (amodal) extent ``[x, y, w, h]`` of the object's polygon,
  which always lies inside the image; ``segmentation`` is that polygon
  (``[[x1, y1, x2, y2, ...]]``) and ``area`` its area, as in COCO.
* Annotations of an image are listed in drawing order (later ones are on top).
* Category ids start at 1 in the order of :data:`CLASSES`; image and annotation
  ids start at 1 in each split; ``file_name`` is relative to the split folder,
  so mmdet's ``CocoDataset`` uses ``data_prefix=dict(img='train/')``.

Determinism: every image is drawn from its own RNG seeded with
``(seed, split, index)``, so the same parameters give byte-identical images and
JSON files, independently of generation order or of the number of images.

Idempotence: ``synthetic_manifest.json`` records the parameters; it is written
with status ``incomplete`` before anything else and rewritten as ``complete``
(with the SHA-256 of both annotation files) last, so an interrupted run is
detected and regenerated.

Command line::

    python -m mmdet_eakd.datasets.synthetic --out data/synthetic
    eakd-make-synthetic --out data/synthetic --num-train 400 --num-val 100
"""
import argparse
import colorsys
import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

#: Four families of two classes each, whose members share structure as the
#: classes of a real detection set do (COCO's car / truck, cat / dog): a shape
#: and its hollow version (the same outline with a hole of 40-60 % of its
#: size). On small objects the two are hard to tell apart (a filled shape can
#: have a darker or lighter outline), so that a teacher's non-target
#: probabilities fall on the sibling class.
FAMILIES: Dict[str, Tuple[str, ...]] = {
    'round': ('circle', 'ring'),
    'box': ('square', 'frame'),
    'wedge': ('triangle', 'hollow_triangle'),
    'cross': ('cross', 'hollow_cross'),
}
CLASSES: Tuple[str, ...] = tuple(c for family in FAMILIES.values() for c in family)
HOLLOW = {members[1]: members[0] for members in FAMILIES.values()}
HOLE = (0.4, 0.6)  # size of a hollow shape's hole relative to the shape

DEFAULT_NUM_TRAIN = 400
DEFAULT_NUM_VAL = 100
DEFAULT_IMG_SIZE = 160

#: Bump when the generated content changes, so existing data sets are redone.
GENERATOR_VERSION = 2
MANIFEST_NAME = 'synthetic_manifest.json'
SPLITS: Tuple[str, ...] = ('train', 'val')

MIN_OBJECT_SIZE = 10  # longer side of an object's box, px
MAX_OBJECT_SIZE = 70
MIN_IMG_SIZE = 96  # room to place and overlap objects of MAX_OBJECT_SIZE
MAX_OBJECTS_PER_IMAGE = 6
MIN_VISIBLE_FRACTION = 0.4  # objects more than 60 % occluded are never produced

_SUPERSAMPLE = 2  # draw at 2x and downsample for anti-aliased edges
_PLACEMENT_TRIES = 30
_BORDER = 0.5  # px kept free at the image edges (anti-aliasing, box rounding)
_NEAR_PLACEMENT_PROB = 0.35
_MIN_COLOUR_DISTANCE = 90.0  # RGB distance of object colour to local background
_COLOUR_TRIES = 20

Polygon = np.ndarray  # (N, 2) float64 vertices in image pixels


def _unit_polygon(cls: str, rng: np.random.Generator) -> Polygon:
    """Return the outline of a class's shape centred at the origin.

    A hollow class has the outline of its filled sibling.
    """
    cls = HOLLOW.get(cls, cls)
    if cls == 'circle':
        angles = np.linspace(0.0, 2.0 * math.pi, 48, endpoint=False)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if cls == 'square':
        return np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    if cls == 'triangle':
        angles = -math.pi / 2 + np.arange(3) * 2.0 * math.pi / 3
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if cls == 'cross':
        a = rng.uniform(0.3, 0.45)  # half-width of the arms
        return np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a],
                         [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a],
                         [-a, -a]], dtype=np.float64)
    raise ValueError(f'unknown class {cls!r}')


def _random_shape(cls: str, rng: np.random.Generator) -> Polygon:
    """Return a stretched, rotated shape whose box's longer side is 10-70 px.

    The polygon is centred on its box centre at the origin.
    """
    poly = _unit_polygon(cls, rng) * [rng.uniform(0.8, 1.25), 1.0]
    theta = rng.uniform(0.0, 2.0 * math.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)],
                    [math.sin(theta), math.cos(theta)]])
    poly = poly @ rot.T
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    size = MIN_OBJECT_SIZE + (MAX_OBJECT_SIZE - MIN_OBJECT_SIZE) * math.sqrt(rng.random())
    return (poly - (lo + hi) / 2) * (size / (hi - lo).max())


def _polygon_mask(poly: Polygon, img_size: int) -> np.ndarray:
    """Rasterise a polygon into a boolean mask of the image size."""
    mask = Image.new('L', (img_size, img_size), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in poly], fill=1)
    return np.asarray(mask, dtype=bool)


def _polygon_area(poly: Polygon) -> float:
    """Shoelace area of a simple polygon."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _place_objects(rng: np.random.Generator,
                   img_size: int) -> List[Tuple[int, Polygon]]:
    """Choose classes and polygons of an image's objects, in drawing order.

    A candidate is rejected when its box leaves the image (minus a small
    border), or when drawing it on top would leave an earlier object less than
    ``MIN_VISIBLE_FRACTION`` visible. A slot without a valid candidate after
    ``_PLACEMENT_TRIES`` draws is left empty.
    """
    num_objects = int(rng.integers(1, MAX_OBJECTS_PER_IMAGE + 1))
    placed: List[Tuple[int, Polygon]] = []
    full_masks: List[np.ndarray] = []
    covered: List[np.ndarray] = []  # union of the masks drawn after each object
    for _ in range(num_objects):
        label = int(rng.integers(len(CLASSES)))
        for _ in range(_PLACEMENT_TRIES):
            poly = _random_shape(CLASSES[label], rng)
            half = (poly.max(axis=0) - poly.min(axis=0)) / 2
            if placed and rng.random() < _NEAR_PLACEMENT_PROB:
                other = placed[int(rng.integers(len(placed)))][1]
                other_half = (other.max(axis=0) - other.min(axis=0)) / 2
                direction = rng.uniform(0.0, 2.0 * math.pi)
                dist = rng.uniform(0.4, 1.0) * (half.max() + other_half.max())
                centre = ((other.max(axis=0) + other.min(axis=0)) / 2 +
                          dist * np.array([math.cos(direction), math.sin(direction)]))
            else:
                centre = rng.uniform(half, img_size - half)
            poly = poly + centre
            if poly.min() < _BORDER or poly.max() > img_size - _BORDER:
                continue
            mask = _polygon_mask(poly, img_size)
            if not mask.any():
                continue
            if all((full & ~cov & ~mask).sum() >= MIN_VISIBLE_FRACTION * full.sum()
                   for full, cov in zip(full_masks, covered)):
                for cov in covered:
                    cov |= mask
                placed.append((label, poly))
                full_masks.append(mask)
                covered.append(np.zeros_like(mask))
                break
    return placed


def _random_colour(rng: np.random.Generator, saturation: Tuple[float, float],
                   value: Tuple[float, float]) -> np.ndarray:
    """Draw an RGB colour (0-255 floats) with a uniform hue."""
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation),
                              rng.uniform(*value))
    return np.array(rgb) * 255.0


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """Gradient between two colours plus low-frequency colour blotches."""
    c0 = _random_colour(rng, (0.0, 0.6), (0.15, 0.95)).astype(np.float32)
    c1 = _random_colour(rng, (0.0, 0.6), (0.15, 0.95)).astype(np.float32)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    t = ramp[None, :] * math.cos(theta) + ramp[:, None] * math.sin(theta)
    t = ((t - t.min()) / (t.max() - t.min()))[..., None]
    grid = int(rng.integers(3, 7))
    blotch = np.clip(128 + rng.normal(0.0, rng.uniform(10, 30), (grid, grid, 3)),
                     0, 255).astype(np.uint8)
    blotch = Image.fromarray(blotch).resize((size, size), Image.Resampling.BICUBIC)
    img = c0 * (1.0 - t) + c1 * t + np.asarray(blotch, dtype=np.float32) - 128
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _rgb(colour: np.ndarray) -> Tuple[int, int, int]:
    """Convert a float colour to a Pillow RGB tuple."""
    r, g, b = (min(255, max(0, int(round(float(c))))) for c in colour)
    return r, g, b


def _random_point(rng: np.random.Generator, size: int) -> Tuple[float, float]:
    """A uniform point on a canvas."""
    x, y = rng.uniform(0, size, 2)
    return float(x), float(y)


def _draw_lines(img: Image.Image, rng: np.random.Generator, count: int,
                max_width: int) -> None:
    """Draw ``count`` random straight lines or two-segment polylines."""
    draw = ImageDraw.Draw(img)
    size = img.width
    for _ in range(count):
        points = [_random_point(rng, size) for _ in range(int(rng.integers(2, 4)))]
        width = int(rng.integers(1, max_width + 1)) * _SUPERSAMPLE
        draw.line(points, fill=_rgb(_random_colour(rng, (0.0, 1.0), (0.1, 1.0))),
                  width=width, joint='curve')


def _draw_blobs(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Blend 1-4 irregular, blurred, half-transparent blobs into ``img``."""
    size = img.width
    for _ in range(int(rng.integers(1, 5))):
        n = int(rng.integers(7, 13))
        angles = np.sort(rng.uniform(0.0, 2.0 * math.pi, n))
        radii = rng.uniform(5, 30) * rng.uniform(0.5, 1.0, n)
        centre = rng.uniform(0, size, 2)
        pts = centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
        mask = Image.new('L', (size, size), 0)
        ImageDraw.Draw(mask).polygon([tuple(p) for p in pts],
                                     fill=int(rng.uniform(80, 180)))
        mask = mask.filter(ImageFilter.GaussianBlur(rng.uniform(3, 8)))
        colour = Image.new(
            'RGB', (size, size), _rgb(_random_colour(rng, (0.0, 1.0), (0.1, 1.0))))
        img = Image.composite(colour, img, mask)
    return img


def _object_colour(rng: np.random.Generator, local_bg: np.ndarray) -> np.ndarray:
    """A random colour that stands out from the local background colour."""
    candidates = []
    for _ in range(_COLOUR_TRIES):
        colour = _random_colour(rng, (0.25, 1.0), (0.3, 1.0))
        dist = float(np.linalg.norm(colour - local_bg))
        if dist >= _MIN_COLOUR_DISTANCE:
            return colour
        candidates.append((dist, colour))
    return max(candidates, key=lambda candidate: candidate[0])[1]


def _render_image(rng: np.random.Generator,
                  img_size: int) -> Tuple[np.ndarray, List[Tuple[int, Polygon]]]:
    """Render one image.

    Returns:
        The uint8 HxWx3 image and its objects as ``(label, polygon)`` in drawing
        order, with label an index into :data:`CLASSES`.
    """
    base = _draw_blobs(_background(rng, img_size), rng)  # smooth: drawn at 1x
    img = base.resize((img_size * _SUPERSAMPLE,) * 2, Image.Resampling.BILINEAR)
    _draw_lines(img, rng, int(rng.integers(1, 7)), max_width=3)
    objects = _place_objects(rng, img_size)
    base_pixels = np.asarray(base, dtype=np.float32)
    draw = ImageDraw.Draw(img)
    for label, poly in objects:
        x0, y0 = np.floor(poly.min(axis=0)).astype(int)
        x1, y1 = np.ceil(poly.max(axis=0)).astype(int)
        fill = _object_colour(rng, base_pixels[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0))
        xy = [tuple(p) for p in poly * _SUPERSAMPLE]
        if CLASSES[label] in HOLLOW:
            centre = poly.mean(axis=0)
            hole = (poly - centre) * rng.uniform(*HOLE) + centre
            mask = Image.new('L', img.size, 0)
            shape = ImageDraw.Draw(mask)
            shape.polygon(xy, fill=255)
            shape.polygon([tuple(p) for p in hole * _SUPERSAMPLE], fill=0)
            img.paste(_rgb(fill), mask=mask)
        elif rng.random() < 0.35:
            outline = fill * rng.choice([0.45, 1.6])
            draw.polygon(xy, fill=_rgb(fill), outline=_rgb(outline),
                         width=int(rng.integers(1, 3)) * _SUPERSAMPLE)
        else:
            draw.polygon(xy, fill=_rgb(fill))
    if rng.random() < 0.5:
        _draw_lines(img, rng, int(rng.integers(1, 3)), max_width=1)
    img = img.resize((img_size, img_size), Image.Resampling.BOX)
    noisy = np.asarray(img, dtype=np.float32) + rng.uniform(2, 9) * (
        rng.standard_normal((img_size, img_size, 3), dtype=np.float32))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), objects


def _family(cls: str) -> str:
    """The family (COCO ``supercategory``) of a class."""
    return next(name for name, members in FAMILIES.items() if cls in members)


def _r2(value: float) -> float:
    """Round to 2 decimals (stable, compact JSON)."""
    return round(float(value), 2)


def _generate_split(root: Path, split: str, num_images: int, img_size: int,
                    seed: int) -> Dict[str, Any]:
    """Write a split's images and return its COCO annotation dict."""
    img_dir = root / split
    img_dir.mkdir(parents=True)
    images, annotations = [], []
    for index in range(num_images):
        rng = np.random.default_rng([seed, SPLITS.index(split), index])
        pixels, objects = _render_image(rng, img_size)
        file_name = f'{index:06d}.png'
        Image.fromarray(pixels).save(img_dir / file_name)
        image_id = index + 1
        images.append(dict(id=image_id, file_name=file_name, width=img_size,
                           height=img_size))
        for label, poly in objects:
            (x0, y0), (x1, y1) = (np.round(poly.min(axis=0), 2),
                                  np.round(poly.max(axis=0), 2))
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id, category_id=label + 1,
                bbox=[_r2(x0), _r2(y0), _r2(x1 - x0), _r2(y1 - y0)],
                area=_r2(_polygon_area(poly)),
                segmentation=[[_r2(v) for v in poly.reshape(-1)]], iscrowd=0))
    return dict(
        info=dict(description=f'mmdet-eakd synthetic shapes ({split})',
                  version=str(GENERATOR_VERSION)),
        licenses=[], images=images, annotations=annotations,
        categories=[dict(id=i + 1, name=name, supercategory=_family(name))
                    for i, name in enumerate(CLASSES)])


def _sha256(path: Path) -> str:
    """SHA-256 hex digest of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(data, separators=(',', ':')))
    os.replace(tmp, path)


def _result(root: Path, counts: Dict[str, Dict[str, int]],
            generated: bool) -> Dict[str, Any]:
    """Build the return value of :func:`generate_synthetic_coco`."""
    result: Dict[str, Any] = dict(root=str(root), classes=CLASSES,
                                  generated=generated)
    for split in SPLITS:
        result[f'{split}_img_dir'] = str(root / split)
        result[f'{split}_ann_file'] = str(root / 'annotations' / f'instances_{split}.json')
        result[f'num_{split}_images'] = counts[split]['images']
        result[f'num_{split}_annotations'] = counts[split]['annotations']
    return result


def _is_complete(root: Path, manifest: Dict[str, Any]) -> bool:
    """Whether the files a complete manifest describes are all in place."""
    for split in SPLITS:
        ann = root / 'annotations' / f'instances_{split}.json'
        if not ann.is_file() or _sha256(ann) != manifest['sha256'][split]:
            return False
        n = manifest['counts'][split]['images']
        if not all((root / split / f'{i:06d}.png').is_file() for i in range(n)):
            return False
    return True


def _validate(num_train: int, num_val: int, img_size: int, seed: int) -> None:
    """Raise ``ValueError`` for parameters that cannot give a sensible set."""
    for name, value in (('num_train', num_train), ('num_val', num_val),
                        ('img_size', img_size), ('seed', seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f'{name} must be an integer, got {value!r}')
    if num_train <= 0 or num_val <= 0:
        raise ValueError('num_train and num_val must be positive, got '
                         f'num_train={num_train}, num_val={num_val}')
    if img_size < MIN_IMG_SIZE:
        raise ValueError(
            f'img_size={img_size} is too small: objects are {MIN_OBJECT_SIZE}-'
            f'{MAX_OBJECT_SIZE} px, so img_size must be >= {MIN_IMG_SIZE}')
    if seed < 0:
        raise ValueError(f'seed must be >= 0, got {seed}')


def generate_synthetic_coco(out_dir: Union[str, os.PathLike],
                            num_train: int = DEFAULT_NUM_TRAIN,
                            num_val: int = DEFAULT_NUM_VAL,
                            img_size: int = DEFAULT_IMG_SIZE,
                            seed: int = 0,
                            overwrite: bool = False) -> Dict[str, Any]:
    """Generate (or reuse) the synthetic COCO data set in ``out_dir``.

    Writes ``out_dir/{train,val}/NNNNNN.png``,
    ``out_dir/annotations/instances_{train,val}.json`` and, last,
    ``out_dir/synthetic_manifest.json``. See the module docstring for the
    content. Only these paths are written or removed in ``out_dir``.

    Args:
        out_dir: Root folder of the data set (created if missing).
        num_train: Number of training images (> 0).
        num_val: Number of validation images (> 0).
        img_size: Width and height of the square images (>= ``MIN_IMG_SIZE``).
        seed: Non-negative seed; the same parameters give byte-identical files.
        overwrite: Replace an existing data set generated with other
            parameters (or data not written by this generator) in ``out_dir``.

    Returns:
        dict with ``root``, ``classes``, ``generated`` (False when a complete
        set with the same parameters was reused), and for ``split`` in
        ``train``/``val``: ``{split}_img_dir``, ``{split}_ann_file``,
        ``num_{split}_images``, ``num_{split}_annotations``.

    Raises:
        ValueError: Invalid parameters.
        FileExistsError: ``out_dir`` holds a different data set and
            ``overwrite`` is False.
    """
    _validate(num_train, num_val, img_size, seed)
    root = Path(out_dir)
    params = dict(generator_version=GENERATOR_VERSION, num_train=int(num_train),
                  num_val=int(num_val), img_size=int(img_size), seed=int(seed))
    manifest_path = root / MANIFEST_NAME
    ours = [root / name for name in (*SPLITS, 'annotations')]

    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        complete = manifest.get('status') == 'complete'
        if complete and manifest.get('params') == params and _is_complete(root, manifest):
            return _result(root, manifest['counts'], generated=False)
        if complete and manifest.get('params') != params and not overwrite:
            old = manifest.get('params', {})
            diff = ', '.join(f'{k}: existing={old.get(k)!r}, requested={v!r}'
                             for k, v in params.items() if old.get(k) != v)
            raise FileExistsError(
                f'{root} already holds a synthetic data set with other parameters '
                f'({diff}). Pass overwrite=True (--overwrite on the command line) '
                'to replace it, or choose another output directory.')
        # Otherwise: half-written, damaged, or to be overwritten -> regenerate.
    elif any(p.exists() for p in ours) and not overwrite:
        raise FileExistsError(
            f'{root} contains {", ".join(p.name for p in ours if p.exists())} but no '
            f'{MANIFEST_NAME}, so it was not written by this generator. Pass '
            'overwrite=True (--overwrite) to replace these folders, or choose '
            'another output directory.')

    root.mkdir(parents=True, exist_ok=True)
    _write_json(manifest_path, dict(status='incomplete', params=params))
    for path in ours:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    (root / 'annotations').mkdir()
    counts, hashes = {}, {}
    for split, num in zip(SPLITS, (num_train, num_val)):
        coco = _generate_split(root, split, num, img_size, seed)
        ann_file = root / 'annotations' / f'instances_{split}.json'
        _write_json(ann_file, coco)
        counts[split] = dict(images=len(coco['images']),
                             annotations=len(coco['annotations']))
        hashes[split] = _sha256(ann_file)
    _write_json(manifest_path, dict(status='complete', params=params,
                                    classes=list(CLASSES), counts=counts,
                                    sha256=hashes))
    return _result(root, counts, generated=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point (``eakd-make-synthetic``)."""
    parser = argparse.ArgumentParser(
        prog='eakd-make-synthetic',
        description='Generate the deterministic synthetic COCO detection data set '
        f'(classes: {", ".join(CLASSES)}). Reuses an existing complete set '
        'with the same parameters.')
    parser.add_argument('--out', default='data/synthetic',
                        help='output directory (default: %(default)s)')
    parser.add_argument('--num-train', type=int, default=DEFAULT_NUM_TRAIN,
                        help='training images (default: %(default)s)')
    parser.add_argument('--num-val', type=int, default=DEFAULT_NUM_VAL,
                        help='validation images (default: %(default)s)')
    parser.add_argument('--img-size', type=int, default=DEFAULT_IMG_SIZE,
                        help=f'image side in px, >= {MIN_IMG_SIZE} '
                        '(default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0,
                        help='random seed (default: %(default)s)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace a data set with other parameters in --out')
    args = parser.parse_args(argv)
    try:
        result = generate_synthetic_coco(
            args.out, num_train=args.num_train, num_val=args.num_val,
            img_size=args.img_size, seed=args.seed, overwrite=args.overwrite)
    except ValueError as err:
        parser.error(str(err))
    except FileExistsError as err:
        parser.exit(1, f'{parser.prog}: error: {err}\n')
    action = 'Wrote' if result['generated'] else 'Up to date (reused)'
    print(f'{action} synthetic COCO data set in {result["root"]}')
    for split in SPLITS:
        print(f'  {split}: {result[f"num_{split}_images"]} images, '
              f'{result[f"num_{split}_annotations"]} objects -> '
              f'{result[f"{split}_img_dir"]}, {result[f"{split}_ann_file"]}')
    print(f'  classes: {", ".join(CLASSES)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
