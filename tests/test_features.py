"""Log-mel front end and the crops of Sec. 2.1 (two non-overlapping equal-length segments)."""
import numpy as np
import pytest
import torch

from cometa.models.features import FeatureConfig, LogMel, eval_crops, random_crop, two_segment_starts, two_segments


def test_logmel_shape_frames_and_cmn():
    lm = LogMel.from_config(FeatureConfig())
    wave = torch.randn(3, 16000)
    x = lm(wave)
    assert x.shape == (3, 80, 101)  # 1 + 16000 // 160 frames (center=True)
    assert lm.n_frames(16000) == 101
    assert torch.isfinite(x).all()
    assert x.mean(dim=-1).abs().max() < 1e-4  # CMN: every band has time-mean 0


def test_logmel_is_log_of_mel_power():
    """Before CMN the front end is log(mel power + 1e-6): a louder copy shifts every bin by the same
    log gain, which CMN removes."""
    lm = LogMel.from_config(FeatureConfig())
    wave = torch.randn(1, 8000)
    torch.testing.assert_close(lm(wave), lm(10 * wave), atol=1e-2, rtol=0)  # up to the 1e-6 floor


def test_logmel_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        LogMel()(torch.randn(16000))


def test_random_crop_long_and_wrapped():
    rng = np.random.default_rng(0)
    wave = np.arange(100, dtype=np.float32)
    c = random_crop(wave, 30, rng)
    assert c.shape == (30,) and np.all(np.diff(c) == 1)  # one contiguous window
    short = random_crop(np.arange(7.0), 20, rng)
    np.testing.assert_array_equal(short, np.arange(20) % 7)  # wrapped


@pytest.mark.parametrize("length", [80, 81, 100, 137, 1000])
def test_two_segments_non_overlapping_equal_length(length):
    rng = np.random.default_rng(length)
    wave = np.arange(length)  # values are the sample indices
    seen_first_left = set()
    for _ in range(200):
        a, b = two_segments(wave, 40, rng)
        assert len(a) == len(b) == 40
        assert np.all(np.diff(a) == 1) and np.all(np.diff(b) == 1)  # contiguous
        assert not set(a.tolist()) & set(b.tolist())  # no shared sample
        seen_first_left.add(bool(a[0] < b[0]))
    assert seen_first_left == {True, False}  # either order occurs


def test_two_segments_short_utterance_shrinks_to_half():
    rng = np.random.default_rng(0)
    wave = np.arange(51)
    for _ in range(50):
        a, b = two_segments(wave, 40, rng)
        assert len(a) == len(b) == 25  # floor(51 / 2)
        assert not set(a.tolist()) & set(b.tolist())
    # the caller pads them up by wrapping
    assert len(random_crop(a, 40, rng)) == 40
    with pytest.raises(ValueError, match="too short"):
        two_segments(np.zeros(1), 40, rng)


def test_two_segment_starts_cover_every_placement():
    """Uniform over non-overlapping placements: with 2 free samples every valid pair appears."""
    rng = np.random.default_rng(0)
    seen = {two_segment_starts(12, 5, rng)[:2] for _ in range(2000)}
    valid = {(s1, s2) for s1 in range(8) for s2 in range(8) if abs(s1 - s2) >= 5}
    assert seen == valid


def test_eval_crops_even_spacing():
    wave = np.arange(1000, dtype=np.float32)
    c = eval_crops(wave, 100)
    assert c.shape == (10, 100)
    np.testing.assert_array_equal(c[:, 0], np.round(np.linspace(0, 900, 10)))
    assert c[-1, -1] == 999
    assert eval_crops(wave[:50], 100).shape == (1, 100)  # short: one wrapped crop
    assert eval_crops(wave[:103], 100).shape == (4, 100)  # only 4 distinct starts
