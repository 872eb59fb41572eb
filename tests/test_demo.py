"""The demo's short (CI) mode runs every stage and writes its results."""
import json
import math

from conftest import ROOT, python_tool, run_tool
from PIL import Image

MODELS = ['teacher', 'student', 'KD', 'EA-KD']


def test_demo_short_mode(tmp_path):
    args = python_tool('demo.py') + [
        '--short', '--work-dir', str(tmp_path / 'demo'), '--data-root',
        str(tmp_path / 'data')
    ]
    first = run_tool(args, cwd=ROOT, timeout=1800).stdout
    for stage in ('1/4 data set', '2/4 teacher', '3/4 students',
                  '4/4 results'):
        assert stage in first
    assert '[EA-KD] Epoch(train)' in first  # progress with iteration / ETA
    out = tmp_path / 'demo'
    results = json.loads((out / 'results.json').read_text())
    assert [r['model'] for r in results['results']] == MODELS
    for row in results['results']:
        for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
            assert math.isfinite(row[key]) and 0 <= row[key] <= 1, row
    table = (out / 'results.md').read_text()
    for name in MODELS:
        assert f'| {name} |' in table and f'| {name} |' in first
    with Image.open(out / 'results.png') as image:
        assert image.size[0] > 300 and image.size[1] > 200

    # a second run reuses the data set and the cached teacher
    second = run_tool(args, cwd=ROOT, timeout=1800).stdout
    assert 'reused existing set' in second
    assert 'reusing cached teacher' in second
    assert '[teacher] Epoch(train)' not in second
