"""Readers for VoxCeleb-shaped data: audio, face frames, manifests and VoxCeleb1 trial lists.

The real data and the embedded corpus share one layout under a data root::

    <split>/wav/<speaker>/<video>/<utterance>.wav      (or <split>/aac/.../<utterance>.m4a)
    <split>/faces/<speaker>/<video>/<utterance>/*.jpg  (face frames at 1 fps)
    trials/veri_test2.txt  list_test_all2.txt  list_test_hard2.txt

with ``train`` = VoxCeleb2 dev and ``test`` = VoxCeleb1 (see README, "Preparing VoxCeleb"). An
utterance's key is ``<speaker>/<video>/<utterance>.wav`` -- the path the VoxCeleb1 trial lists use
-- whatever the audio container. Every bad input raises :class:`DataError` naming the file (and
line).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DataError", "read_trials", "check_trials", "build_manifest", "load_audio", "load_frames",
           "MANIFEST_COLUMNS", "AUDIO_SUFFIXES"]

MANIFEST_COLUMNS = ["speaker", "video", "utterance", "key", "audio_path", "frame_paths", "n_frames", "duration"]
AUDIO_SUFFIXES = (".wav", ".m4a", ".flac")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
CONVERT_HINT = ("convert it to 16 kHz mono wav first: ffmpeg -i in.m4a -ar 16000 -ac 1 out.wav "
                "(README, 'Preparing VoxCeleb', has a loop for the whole tree)")


class DataError(ValueError):
    """Bad input data; the message names the file (and line)."""


# ------------------------------------------------------------------------------------------ trials
def read_trials(path: str | Path) -> pd.DataFrame:
    """A VoxCeleb1 trial list (lines ``label enroll test``) as DataFrame(label int8, enroll, test)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise DataError(f"{path}: cannot read the trial list ({e.strerror or e})") from None
    labels, enroll, test = [], [], []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise DataError(f"{path}:{no}: malformed trial line {line.strip()!r} "
                            "(expected 'label enroll test' with label 0 or 1)")
        labels.append(int(parts[0]))
        enroll.append(parts[1])
        test.append(parts[2])
    return pd.DataFrame({"label": np.array(labels, dtype=np.int8), "enroll": enroll, "test": test})


def check_trials(trials: pd.DataFrame, keys, *, path: str | Path) -> None:
    """Every enroll and test key of ``trials`` must be an utterance of the manifest (``keys``)."""
    known = pd.Index(keys)
    bad = ~trials["enroll"].isin(known) | ~trials["test"].isin(known)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        row = trials.iloc[i]
        key = row["enroll"] if row["enroll"] not in known else row["test"]
        raise DataError(f"{path}:{i + 1}: trial names {key!r}, which is not in the test manifest "
                        f"({int(bad.sum())} trial(s) name unknown utterances)")


# ------------------------------------------------------------------------------------------ manifest
def _scandir_sorted(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []


def _audio_dir(split_root: Path) -> Path:
    for name in ("wav", "aac"):
        if (split_root / name).is_dir():
            return split_root / name
    raise DataError(f"{split_root}: no wav/ or aac/ folder of <speaker>/<video>/<utterance> audio")


def iter_utterances(split_root: str | Path):
    """(speaker, video, utterance stem, audio path) of every audio file, in sorted order."""
    audio_root = _audio_dir(Path(split_root))
    for spk in _scandir_sorted(audio_root):
        if not spk.is_dir():
            continue
        for video in _scandir_sorted(Path(spk.path)):
            if not video.is_dir():
                continue
            for f in _scandir_sorted(Path(video.path)):
                stem, suffix = os.path.splitext(f.name)
                if suffix.lower() in AUDIO_SUFFIXES:
                    yield spk.name, video.name, stem, f.path


def frame_paths(face_dir: str | Path) -> list[str]:
    """Sorted image files of one utterance's face folder ([] when the folder is missing)."""
    return [e.path for e in _scandir_sorted(Path(face_dir)) if e.name.lower().endswith(FRAME_SUFFIXES)]


def build_manifest(split_root: str | Path, *, faces_root: str | Path | None = None, progress: bool = False) -> pd.DataFrame:
    """One row per utterance of a split: speaker, video, utterance, key, audio_path, frame_paths
    (sorted list), n_frames, duration (seconds; NaN for compressed audio). Sorted by key."""
    import soundfile as sf
    from tqdm import tqdm

    split_root = Path(split_root)
    faces_root = Path(faces_root) if faces_root is not None else split_root / "faces"
    rows = []
    for spk, video, utt, audio in tqdm(iter_utterances(split_root), desc=f"manifest {split_root.name}",
                                       disable=not progress, unit=" utt"):
        frames = frame_paths(faces_root / spk / video / utt)
        duration = float("nan")
        if audio.lower().endswith((".wav", ".flac")):
            try:
                info = sf.info(audio)
                duration = info.frames / info.samplerate
            except (RuntimeError, sf.LibsndfileError):
                duration = float("nan")  # reported by load_audio / scan_corpus with the file's name
        rows.append((spk, video, utt, f"{spk}/{video}/{utt}.wav", audio, frames, len(frames), duration))
    if not rows:
        raise DataError(f"{split_root}: no utterances found (expected wav/<speaker>/<video>/<utterance>.wav)")
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS).sort_values("key", ignore_index=True)


# ------------------------------------------------------------------------------------------ audio
def _decode_m4a(path: Path, sample_rate: int) -> np.ndarray:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise DataError(f"{path}: cannot decode .m4a here (no ffmpeg found); {CONVERT_HINT}")
    proc = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "-"],
                          capture_output=True)
    if proc.returncode != 0:
        raise DataError(f"{path}: ffmpeg could not decode it: {proc.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def load_audio(path: str | Path, *, sample_rate: int = 16000) -> np.ndarray:
    """(T,) float32 mono waveform; DataError naming the file when it is unreadable, empty or at
    another sample rate (VoxCeleb is 16 kHz: resample offline, never silently here)."""
    import soundfile as sf

    path = Path(path)
    if path.suffix.lower() == ".m4a":
        wave = _decode_m4a(path, sample_rate)
    else:
        try:
            wave, sr = sf.read(path, dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError, OSError) as e:
            raise DataError(f"{path}: unreadable audio ({e})") from None
        if sr != sample_rate:
            raise DataError(f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz")
        wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    if wave.size == 0:
        raise DataError(f"{path}: empty audio (0 samples)")
    return np.ascontiguousarray(wave, dtype=np.float32)


def load_frames(paths, *, size: int) -> np.ndarray:
    """(F, size, size, 3) uint8 RGB face frames, resized (bilinear) when needed."""
    from PIL import Image, UnidentifiedImageError

    paths = list(paths)
    if not paths:
        raise DataError("no face frames to load (an utterance without a face folder)")
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                out[i] = np.asarray(im)
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"{p}: unreadable face frame ({e})") from None
    return out
