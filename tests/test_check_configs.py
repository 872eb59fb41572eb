"""tools/check_configs.py: every shipped config builds offline and trains a step."""
import subprocess
import sys

from conftest import ROOT, SYNTHETIC_CONFIGS
from mmengine.config import Config

CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py')
                 if '_base_' not in p.parts)
#: The logit-distillation configs of each Faster R-CNN pair.
PAIR_PREFIXES = ('kd_', 'eakd_', 'dkd_', 'eadkd_')
#: Every distillation config (pkd_: the heterogeneous feature-only pair).
DISTILL_PREFIXES = PAIR_PREFIXES + ('pkd_', )


def _run(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'check_configs.py'), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=1800)


def test_every_shipped_config_trains_one_step_offline():
    # the two Faster R-CNN COCO pairs, each with student / KD / EA-KD / DKD /
    # EA-DKD, and the Cascade R-CNN pair with student / KD / EA-KD
    names = {p.name for p in CONFIGS}
    for pair, student in (('r101_r18', 'r18'), ('r50_mv2', 'mv2')):
        assert f'student_frcnn_{student}.py' in names
        for prefix in PAIR_PREFIXES:
            assert f'{prefix}frcnn_{pair}.py' in names
    assert {'student_cascade_r18.py', 'kd_cascade_r101_r18.py',
            'eakd_cascade_r101_r18.py'} <= names
    # the dense pairs (RetinaNet and GFL R-101 -> R-18), student / KD / EA-KD
    for family in ('retinanet', 'gfl'):
        assert {f'student_{family}_r18.py', f'kd_{family}_r101_r18.py',
                f'eakd_{family}_r101_r18.py'} <= names
    # GFL with two named terms, KD + LD and EA-KD + EA-LD, and their twins
    assert {'kd_ld_gfl_r101_r18.py', 'eakd_eald_gfl_r101_r18.py',
            'kd_ld_gfl_teacher_tiny_synthetic.py',
            'eakd_eald_gfl_teacher_tiny_synthetic.py'} <= names
    # feature terms (issue 18): EA-KD + PKD / EA-PKD on Faster R-CNN, the
    # three terms on GFL, the heterogeneous Faster R-CNN -> RetinaNet PKD
    feature_configs = {'eakd_pkd_frcnn_r101_r18.py',
                       'eakd_eapkd_frcnn_r101_r18.py',
                       'eakd_eald_eapkd_gfl_r101_r18.py',
                       'pkd_frcnn_retinanet_r101_r18.py'}
    assert feature_configs <= names
    assert {name.replace('r101_r18', 'teacher_tiny_synthetic')
            for name in feature_configs} <= names
    # RTMDet: l -> tiny and x -> s with KD / EA-KD / EA-KD + EA-PKD, and
    # synthetic twins
    assert {'kd_rtmdet_l_tiny.py', 'eakd_rtmdet_l_tiny.py',
            'kd_rtmdet_x_s.py', 'eakd_rtmdet_x_s.py',
            'eakd_eapkd_rtmdet_l_tiny.py', 'eakd_eapkd_rtmdet_x_s.py',
            'rtmdet_tiny_synthetic.py', 'kd_rtmdet_teacher_tiny_synthetic.py',
            'eakd_rtmdet_teacher_tiny_synthetic.py'} <= names
    result = _run('--img-size', '128')
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    assert f'{len(CONFIGS)}/{len(CONFIGS)} configs passed' in out
    for config in CONFIGS:
        block = out.split(f'ok   {config}')[1].split('\n')[1]
        dense = any(family in config.name
                    for family in ('retinanet', 'gfl', 'rtmdet'))
        assert 'loss_cls:' in block, config
        assert ('loss_rpn_cls:' in block) != dense, config
        if config.name.startswith(DISTILL_PREFIXES):
            model = Config.fromfile(str(config)).model
            # distill_loss: no suffix; named terms: '_' + the term's name
            terms = ({'': model.distill_loss} if model.get('distill_terms')
                     is None else {f'_{name}': loss
                                   for name, loss in model.distill_terms.items()})
            for suffix, loss in terms.items():
                if loss.type == 'EAPKDLoss':
                    # feature terms: the loss, and their mean EA weight
                    # (from a classification term's entropies) if weighted
                    assert f'loss_kd{suffix}:' in block, (config, suffix)
                    assert (f'ea_weight{suffix}:' in block) == (
                        loss.get('weight_mode', 'ea') != 'none'), config
                    assert f'entropy_t{suffix}:' not in block, config
                    continue
                for key in ('loss_kd', 'ea_weight', 'entropy_t',
                            'entropy_s'):
                    assert f'{key}{suffix}:' in block, (config, key, suffix)
                # dense classification terms log the KD shares of positives
                # and background; box terms (positives only) do not
                shares = dense and loss.type != 'EALDLoss'
                assert (f'kd_fg_share{suffix}:' in block) == shares, (config,
                                                                      suffix)
        if 'cascade' in config.name and 'kd_' in config.name:
            for stage in range(3):
                assert f's{stage}.loss_kd:' in block, (config, stage)


def test_a_broken_config_fails_with_its_error(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text(
        f"_base_ = '{SYNTHETIC_CONFIGS / 'eakd_frcnn_teacher_tiny_synthetic.py'}'\n"
        "model = dict(distill_loss=dict(weight_mode='entropy'))\n")
    result = _run(str(bad), '--img-size', '64')
    assert result.returncode == 1
    assert f'FAIL {bad}' in result.stdout and 'weight_mode' in result.stdout
    assert '0/1 configs passed' in result.stdout
