"""Embedding extraction: one face embedding per utterance is the mean of its frames' embeddings."""
import numpy as np
import torch

from cometa.models.augment import build_eval_transform
from cometa.models.encoders.resnet import FaceResNet
from cometa.train.embed import visual_embeddings


class _Bank:
    """A FrameBank stand-in: uint8 (F, S, S, 3) frames per utterance; utterance 2 has none."""

    def __init__(self, frames):
        self.frames = frames

    def __len__(self):
        return len(self.frames)

    def has_frames(self, i):
        return len(self.frames[i]) > 0

    def __getitem__(self, i):
        return self.frames[i]


def test_visual_embeddings_mean_of_frames_and_nan_without_faces():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (f, 40, 40, 3), dtype=np.uint8) for f in (3, 1, 0, 5, 2)]
    torch.manual_seed(0)
    model = FaceResNet(10, base_width=4, image_size=32, embed_dim=8).eval()
    tf = build_eval_transform(32)
    got = visual_embeddings(model, _Bank(frames), tf, device=torch.device("cpu"), batch_size=4, progress=False)
    assert got.shape == (5, 8) and got.dtype == np.float32
    assert np.isnan(got[2]).all() and np.isfinite(np.delete(got, 2, axis=0)).all()
    with torch.no_grad():  # independent: frame by frame through the per-image transform, then the mean
        for i, fr in enumerate(frames):
            if len(fr):
                want = torch.stack([model(tf(f)[None])[0] for f in fr]).mean(0).numpy()
                np.testing.assert_allclose(got[i], want, rtol=0, atol=2e-5)


def test_audio_bank_keeps_16_bit_pcm_as_int16_and_returns_the_same_floats(tmp_path):
    import pandas as pd
    import soundfile as sf

    from cometa.data.datasets import AudioBank
    from cometa.data.voxceleb import load_audio

    rng = np.random.default_rng(0)
    pcm, flt = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(pcm, rng.uniform(-0.9, 0.9, 4000), 16000, subtype="PCM_16")
    sf.write(flt, rng.uniform(-0.9, 0.9, 4000), 16000, subtype="FLOAT")
    bank = AudioBank(pd.DataFrame({"audio_path": [str(pcm), str(flt)]}))
    first = [bank[0], bank[1]]  # read from disk
    assert bank._store[0].dtype == np.int16 and bank._store[1].dtype == np.float32
    for i, path in enumerate((pcm, flt)):
        again = bank[i]  # from the cache
        assert again.dtype == np.float32
        np.testing.assert_array_equal(again, first[i])
        np.testing.assert_array_equal(again, load_audio(path))
