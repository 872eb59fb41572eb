# EA-KD + EA-LD per location: kd_ld_gfl_r101_r18.py with the entropy weights
# of both terms (cls: sigmoid EA weight from the mean binary entropies of the
# class scores, H_ub = log 2; box: EA weight from the mean entropies of the
# four edge distributions at T' = 1, H_ub = log 17). Everything else, LD's
# T = 10 and loss_weight 0.25 included, as in kd_ld_gfl_r101_r18.py.
_base_ = './kd_ld_gfl_r101_r18.py'

model = dict(
    distill_terms=dict(
        cls=dict(weight_mode='ea'), box=dict(weight_mode='ea')))
