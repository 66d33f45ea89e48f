"""Embedding extraction: one audio and one face embedding per utterance.

Audio: the whole utterance, trimmed to a multiple of ``bucket_seconds`` so that utterances of
the same trimmed length batch together (or, with ``eval_seconds > 0``, the mean of fixed crops).
Face: the mean of the embeddings of the utterance's frames (paper Sec. 4.3).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from cometa.data.crops import eval_crops
from cometa.data.datasets import AudioBank, FrameBank
from cometa.models.distributed import all_gather_numpy, rank, world_size


@torch.inference_mode()
def audio_embeddings(model: nn.Module, bank: AudioBank, *, device: torch.device, sample_rate: int = 16000,
                     eval_seconds: float = 0.0, bucket_seconds: float = 0.5, batch_size: int = 32,
                     progress: bool = True, desc: str = "audio embeddings") -> np.ndarray:
    """(N, D) float32 embeddings of every utterance in ``bank``."""
    model.eval()
    n = len(bank)
    out: list[np.ndarray | None] = [None] * n
    bucket = max(1, int(bucket_seconds * sample_rate))
    if eval_seconds > 0:
        crop = int(eval_seconds * sample_rate)
        for i in tqdm(range(n), desc=desc, disable=not progress, leave=False):
            crops = torch.from_numpy(eval_crops(bank[i], crop)).float().to(device)  # (K, T)
            out[i] = model(crops).mean(0).cpu().numpy()
    else:
        lengths = np.array([max(bucket, (len(bank[i]) // bucket) * bucket) for i in range(n)])
        order = np.lexsort((np.arange(n), lengths))
        with tqdm(total=n, desc=desc, disable=not progress, leave=False) as bar:
            start = 0
            while start < n:
                length = lengths[order[start]]
                stop = start
                while stop < n and stop - start < batch_size and lengths[order[stop]] == length:
                    stop += 1
                idx = order[start:stop]
                waves = np.stack([_fit(bank[i], length) for i in idx])  # (b, T)
                emb = model(torch.from_numpy(waves).float().to(device)).cpu().numpy()
                for j, i in enumerate(idx):
                    out[i] = emb[j]
                bar.update(stop - start)
                start = stop
    return np.stack(out).astype(np.float32)  # type: ignore[arg-type]  # (every row is filled above)


def _fit(wave: np.ndarray, length: int) -> np.ndarray:
    """Trim to ``length`` (centre) or wrap-pad up to it."""
    if len(wave) >= length:
        off = (len(wave) - length) // 2
        return wave[off:off + length]
    return np.resize(wave, length)


@torch.inference_mode()
def visual_embeddings(model: nn.Module, bank: FrameBank, transform, *, device: torch.device, batch_size: int = 256,
                      progress: bool = True, desc: str = "face embeddings") -> np.ndarray:
    """(N, D) float32: mean of each utterance's frame embeddings; NaN rows for audio-only utterances.

    ``transform`` maps a (F, 3, H, W) uint8 tensor of one utterance's frames to float images in one
    call (the deterministic :func:`cometa.models.augment.build_eval_transform` works on such batches and
    gives the same images as frame by frame); frames are embedded ``batch_size`` at a time.
    """
    model.eval()
    n = len(bank)
    rows: list[int] = []  # utterance of each pending frame
    chunks: list[torch.Tensor] = []
    sums: dict[int, torch.Tensor] = {}
    counts = np.zeros(n)

    def flush():
        if not chunks:
            return
        emb = model(torch.cat(chunks).to(device)).float().cpu()  # (F_pending, D)
        index = torch.tensor(rows)
        for i in index.unique().tolist():
            sums[i] = sums.get(i, 0) + emb[index == i].sum(0)
        rows.clear()
        chunks.clear()

    pending = 0
    for i in tqdm(range(n), desc=desc, disable=not progress, leave=False):
        if not bank.has_frames(i):
            continue
        frames = transform(torch.from_numpy(np.ascontiguousarray(bank[i])).permute(0, 3, 1, 2))  # (F, 3, S, S)
        chunks.append(frames)
        rows += [i] * len(frames)
        counts[i] = len(frames)
        pending += len(frames)
        if pending >= batch_size:
            flush()
            pending = 0
    flush()
    dim = next(iter(sums.values())).shape[0] if sums else 1
    out = np.full((n, dim), np.nan, dtype=np.float32)
    for i, total in sums.items():
        out[i] = (total / counts[i]).numpy()
    return out


class _Shard:
    """The rows ``index`` of a bank, seen as a bank (for sharded extraction under DDP)."""

    def __init__(self, bank, index: np.ndarray):
        self.bank, self.index = bank, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        return self.bank[int(self.index[i])]

    def has_frames(self, i: int) -> bool:
        return self.bank.has_frames(int(self.index[i]))


def sharded(extract, model: nn.Module, bank, **kwargs) -> np.ndarray:
    """``extract(model, bank, **kwargs)`` with the rows split over the DDP ranks and gathered
    (every rank gets the full (N, D) array, rows in the bank's order). One process: a plain call."""
    ws = world_size()
    if ws == 1:
        return extract(model, bank, **kwargs)
    index = np.arange(len(bank))[rank()::ws]
    part = extract(model, _Shard(bank, index), **kwargs)
    all_index, all_part = all_gather_numpy(index), all_gather_numpy(part)
    out = np.empty((len(bank), all_part.shape[1]), dtype=all_part.dtype)
    out[all_index] = all_part
    return out
