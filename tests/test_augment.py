"""Audio augmentation (SNR, determinism, RIR alignment, MUSAN-like folders) and visual transforms."""
import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from cometa.models.augment import (
    CATEGORIES,
    AudioAugmenter,
    AugmentConfig,
    apply_rir,
    aug_code,
    build_eval_transform,
    build_visual_transform,
    describe_aug,
    generate_bank,
)

SR = 16000


def _speech(seed=0, seconds=1.0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(len(t))
            ).astype(np.float32)


def _snr_db(clean, noisy):
    clean = clean.astype(np.float64)
    return 10 * np.log10(np.mean(clean ** 2) / np.mean((noisy.astype(np.float64) - clean) ** 2))


@pytest.fixture(scope="module")
def augmenter():
    return AudioAugmenter(AugmentConfig(p_noise=1.0, p_reverb=0.0), sample_rate=SR, seed=0)


def test_added_noise_matches_drawn_snr(augmenter):
    wave = _speech()
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(30):
        out, info = augmenter.augment(wave, rng)
        assert out.shape == wave.shape and out.dtype == np.float32
        lo, hi = augmenter.snr[info.category]
        assert lo <= info.snr_db <= hi
        assert abs(_snr_db(wave, out) - info.snr_db) < 0.5
        seen.add(info.category)
    assert seen == set(CATEGORIES)


def test_snr_is_measured_against_reverberant_speech():
    aug = AudioAugmenter(AugmentConfig(p_noise=1.0, p_reverb=1.0), sample_rate=SR, seed=0)
    rir = aug.rirs.clips[0]
    aug.rirs.clips = [rir]  # one impulse response, so that the reverberant speech is known
    wave = _speech()
    out, info = aug.augment(wave, np.random.default_rng(3))
    assert info.reverb and info.code == aug_code(info.category, True) >= 5
    assert abs(_snr_db(apply_rir(wave, rir), out) - info.snr_db) < 0.5


def test_codes():
    assert [aug_code(c, False) for c in (None, *CATEGORIES)] == [0, 1, 2, 3]
    assert [aug_code(c, True) for c in (None, *CATEGORIES)] == [4, 5, 6, 7]
    assert describe_aug(6) == "music+reverb" and describe_aug(4) == "reverb" and describe_aug(0) == "none"


def test_deterministic_by_seed():
    cfg = AugmentConfig(p_noise=0.8, p_reverb=0.5)
    a, b = AudioAugmenter(cfg, sample_rate=SR, seed=5), AudioAugmenter(cfg, sample_rate=SR, seed=5)
    wave = _speech()
    for i in range(10):
        x, cx = a(wave, np.random.default_rng([1, i]))
        y, cy = b(wave, np.random.default_rng([1, i]))
        assert cx == cy and np.array_equal(x, y)
    g1, g2 = generate_bank(5), generate_bank(6)
    assert not np.array_equal(g1["noise"][0], g2["noise"][0])
    assert all(np.array_equal(u, v) for u, v in zip(generate_bank(5)["speech"], g1["speech"]))


def test_generated_bank_is_sane():
    bank = generate_bank(0)
    for key in ("noise", "music", "speech"):
        for clip in bank[key]:
            assert np.isfinite(clip).all() and abs(np.sqrt(np.mean(clip.astype(np.float64) ** 2)) - 1) < 1e-3
    for rir in bank["rir"]:
        assert abs(np.sum(rir.astype(np.float64) ** 2) - 1) < 1e-4
        d = int(np.argmax(np.abs(rir)))
        assert d <= 0.005 * SR  # direct path first
        assert 0.2 * SR <= len(rir) <= 0.82 * SR  # RT60 0.2-0.8 s


def test_rir_keeps_length_and_alignment():
    wave = _speech()
    rir = np.zeros(4000, dtype=np.float32)
    rir[37] = 1.0  # a pure delayed direct path: output = input
    np.testing.assert_allclose(apply_rir(wave, rir), wave, atol=1e-5)
    for rir in generate_bank(1)["rir"]:
        out = apply_rir(wave, rir)
        assert out.shape == wave.shape and np.isfinite(out).all()


def test_reads_musan_like_folders(tmp_path):
    rng = np.random.default_rng(0)
    for sub, n in (("noise/free-sound", 1), ("music/fma", 2), ("speech/librivox", 4)):
        d = tmp_path / "musan" / sub
        d.mkdir(parents=True)
        for i in range(n):
            sf.write(d / f"{i}.wav", 0.1 * rng.standard_normal(SR // 2), SR)  # shorter than the waves: wraps
    ramp = (np.arange(3 * SR) / (3 * SR)).astype(np.float32)  # longer than the waves: a segment is read
    sf.write(tmp_path / "musan" / "noise" / "long.wav", ramp, SR, subtype="FLOAT")
    d = tmp_path / "rirs" / "simulated"
    d.mkdir(parents=True)
    rir = np.zeros(2000)
    rir[10], rir[11:] = 1.0, 0.05 * rng.standard_normal(1989) * np.exp(-np.arange(1989) / 400)
    sf.write(d / "r.wav", rir, 8000)  # another sample rate: resampled
    cfg = AugmentConfig(musan_dir=str(tmp_path / "musan"), rir_dir=str(tmp_path / "rirs"), p_noise=1.0, p_reverb=1.0)
    aug = AudioAugmenter(cfg, sample_rate=SR, seed=0)
    assert [len(aug.sources[k]) for k in ("noise", "music", "speech")] == [2, 2, 4] and len(aug.rirs) == 1
    wave = _speech(seconds=1.2)
    r = np.random.default_rng(1)
    seen = set()
    for _ in range(12):
        out, info = aug.augment(wave, r)
        assert out.shape == wave.shape and np.isfinite(out).all() and info.reverb
        seen.add(info.category)
    assert seen == set(CATEGORIES)
    contiguous = 0
    for _ in range(10):
        seg = aug.noise("noise", SR, r)
        assert seg.shape == (SR,)
        contiguous += bool(np.allclose(np.diff(seg), 1 / (3 * SR), atol=1e-6))  # a window of the ramp
    assert 0 < contiguous < 10  # both files were drawn
    with pytest.raises(FileNotFoundError, match="no .wav files"):
        AudioAugmenter(dataclasses.replace(cfg, musan_dir=str(tmp_path / "rirs")), sample_rate=SR)


def test_visual_transform_shape_and_range():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    tf = build_visual_transform(AugmentConfig(visual_p=1.0), 32)
    torch.manual_seed(0)
    for x in (tf(img), tf(torch.from_numpy(img).permute(2, 0, 1).contiguous())):
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert not torch.equal(tf(img), build_eval_transform(32)(img))


def test_visual_transform_p0_is_resize_only():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    tf, ev = build_visual_transform(AugmentConfig(visual_p=0.0), 32), build_eval_transform(32)
    for _ in range(5):
        assert torch.equal(tf(img), ev(img))
    ref = torch.nn.functional.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None].float(), size=(32, 32),
                                          mode="bilinear", antialias=True, align_corners=False)[0] / 255
    torch.testing.assert_close(ev(img), ref, atol=1 / 255 + 1e-6, rtol=0)
