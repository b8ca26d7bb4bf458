"""SpecAugment on the student's input: masks stay inside each clip, are seeded, and never touch padding."""

import pytest
import torch

from aura_model.distill import DistillConfig
from aura_model.errors import AuraError
from aura_model.train.augment import MaskSettings, mask_generator, spec_augment


def _features(lengths, n_mels=16):
    feats = torch.randn(len(lengths), n_mels, max(lengths), generator=torch.Generator().manual_seed(0))
    for b, n in enumerate(lengths):
        feats[b, :, n:] = -1.5  # padding value
    return feats, torch.tensor(lengths)


def test_masks_stay_inside_each_clip_and_fill_with_its_mean():
    feats, lengths = _features([100, 60])
    settings = MaskSettings(freq_masks=2, freq_width=4, time_masks=2, time_width=0.1)
    out = spec_augment(feats, lengths, settings, mask_generator(0, 1))
    assert out.shape == feats.shape and not torch.equal(out, feats)
    assert torch.equal(feats, _features([100, 60])[0]), "the input is not modified"
    assert torch.equal(out[1, :, 60:], feats[1, :, 60:]), "padding untouched"
    for b, n in enumerate([100, 60]):
        changed = out[b, :, :n] != feats[b, :, :n]
        fill = feats[b, :, :n].mean()
        assert torch.allclose(out[b, :, :n][changed], fill.expand(int(changed.sum())))
        rows = changed.all(dim=1).nonzero().flatten()  # masked mel bands span the whole clip
        cols = changed.all(dim=0).nonzero().flatten()  # masked frames span all bands
        assert len(rows) <= 2 * 4 and len(cols) <= 2 * int(0.1 * n)
        covered = torch.zeros_like(changed)
        covered[rows, :] = True
        covered[:, cols] = True
        assert torch.equal(changed, changed & covered), "every change is part of a band or a frame mask"


def test_masks_are_seeded_by_step_and_off_by_default():
    feats, lengths = _features([80, 80, 80])
    settings = MaskSettings(freq_masks=1, freq_width=6, time_masks=1, time_width=0.2)
    a = spec_augment(feats, lengths, settings, mask_generator(3, 7, 0, 0))
    assert torch.equal(a, spec_augment(feats, lengths, settings, mask_generator(3, 7, 0, 0)))
    others = [spec_augment(feats, lengths, settings, mask_generator(*k)) for k in ((3, 8, 0, 0), (3, 7, 1, 0),
                                                                                  (3, 7, 0, 1), (4, 7, 0, 0))]
    assert all(not torch.equal(a, o) for o in others)
    assert not MaskSettings().active
    assert torch.equal(spec_augment(feats, lengths, MaskSettings(), mask_generator(0, 0)), feats)


def test_mask_settings_are_validated():
    for bad in ({"student_freq_masks": -1}, {"student_time_masks": 1.5}, {"student_time_width": 0.9},
                {"student_freq_width": True}):
        with pytest.raises(AuraError):
            DistillConfig(**bad)
    assert DistillConfig(student_time_masks=2, student_time_width=0.1).student_time_masks == 2
