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
import soundfile as sf
from PIL import Image
from tqdm import tqdm

__all__ = ["DataError", "read_trials", "parse_trials", "check_trials", "unknown_trials", "build_manifest",
           "scan_split", "load_audio", "load_frames", "m4a_decoder", "MANIFEST_COLUMNS", "AUDIO_SUFFIXES"]

MANIFEST_COLUMNS = ["speaker", "video", "utterance", "key", "audio_path", "frame_paths", "n_frames", "duration"]
AUDIO_SUFFIXES = (".wav", ".flac", ".m4a")  # in order of preference when one utterance has several
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
CONVERT_HINT = ("convert it to 16 kHz mono wav first: ffmpeg -i in.m4a -ar 16000 -ac 1 out.wav "
                "(README, 'Preparing VoxCeleb', has a loop for the whole tree)")


class DataError(ValueError):
    """Bad input data; the message names the file (and line)."""


# ------------------------------------------------------------------------------------------ trials
def parse_trials(path: str | Path) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """The well-formed lines of a trial list, and the malformed ones as (line number, text).

    The DataFrame's index holds the 1-based line numbers (named ``line``), so that a check after
    filtering still names the right line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the trial list ({getattr(e, 'strerror', None) or e})") from None
    labels, enroll, test, lines, bad = [], [], [], [], []
    for no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue  # blank line
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            bad.append((no, line.strip()))
            continue
        labels.append(int(parts[0]))
        enroll.append(parts[1])
        test.append(parts[2])
        lines.append(no)
    df = pd.DataFrame({"label": np.array(labels, dtype=np.int8), "enroll": enroll, "test": test},
                      index=pd.Index(lines, dtype=np.int64, name="line"))
    return df, bad


def read_trials(path: str | Path) -> pd.DataFrame:
    """A VoxCeleb1 trial list (lines ``label enroll test``) as DataFrame(label int8, enroll, test).

    Blank lines are skipped; the index holds each trial's line number. A malformed line (not three
    fields, or a label other than 0/1), a trial of an utterance with itself, a pair labelled both 0
    and 1, or a list without trials raises :class:`DataError` naming ``path:line``.
    """
    df, bad = parse_trials(path)
    if bad:
        no, line = bad[0]
        raise DataError(f"{path}:{no}: malformed trial line {line!r} "
                        f"(expected 'label enroll test' with label 0 or 1; {len(bad)} such line(s))")
    if df.empty:
        raise DataError(f"{path}: no trials in the list")
    _check_pairs(df, path)
    return df


def _check_pairs(df: pd.DataFrame, path: str | Path) -> None:
    """A trial of an utterance against itself, or a pair (in either order) labelled both 0 and 1, is an
    error naming the line. A pair repeated with the same label is allowed (lists drawn with replacement,
    as the embedded corpus's, repeat pairs)."""
    same = (df["enroll"] == df["test"]).to_numpy()
    if same.any():
        line = int(df.index[same][0])
        raise DataError(f"{path}:{line}: trial pairs {df['enroll'][line]} with itself (duplicate key)")
    pair = pd.Series([tuple(sorted(p)) for p in zip(df["enroll"], df["test"])], index=df.index)
    labels = df.groupby(pair.to_numpy())["label"].nunique()
    if (labels > 1).any():
        key = labels.index[(labels > 1).to_numpy()][0]
        lines = df.index[pair.map(lambda p: p == key).to_numpy()].tolist()
        raise DataError(f"{path}:{lines[1]}: trial {key[0]} {key[1]} is labelled {df['label'][lines[1]]} here and "
                        f"{df['label'][lines[0]]} on line {lines[0]}")


def _line_numbers(trials: pd.DataFrame) -> np.ndarray:
    if trials.index.name == "line":
        return trials.index.to_numpy()
    return np.arange(1, len(trials) + 1)  # a frame not from read_trials: position stands in for the line


def unknown_trials(trials: pd.DataFrame, keys) -> pd.DataFrame:
    """(line, key) of every trial whose enroll or test key is not in ``keys`` (first offending side)."""
    known = pd.Index(keys)
    bad_enroll = ~trials["enroll"].isin(known).to_numpy()
    bad_test = ~trials["test"].isin(known).to_numpy()
    bad = bad_enroll | bad_test
    key = np.where(bad_enroll, trials["enroll"].to_numpy(dtype=object), trials["test"].to_numpy(dtype=object))
    return pd.DataFrame({"line": _line_numbers(trials)[bad], "key": key[bad]})


def check_trials(trials: pd.DataFrame, keys, *, path: str | Path) -> None:
    """Every enroll and test key of ``trials`` must be an utterance of the manifest (``keys``);
    otherwise :class:`DataError` naming the file, the first offending line and key, and the count."""
    unknown = unknown_trials(trials, keys)
    if len(unknown):
        line, key = unknown.iloc[0]
        raise DataError(f"{path}:{line}: trial names {key!r}, which is not in the test manifest "
                        f"({len(unknown)} of {len(trials)} trial(s) name unknown utterances)")


# ------------------------------------------------------------------------------------------ manifest
def _scandir_sorted(path: str) -> list[os.DirEntry]:
    """Entries of ``path`` by name, hidden ones (``.*``) left out; [] when it does not exist."""
    try:
        with os.scandir(path) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def audio_dir(split_root: str | Path) -> Path:
    """``split_root/wav`` when it exists, else ``split_root/aac`` (VoxCeleb2 as distributed)."""
    split_root = Path(split_root)
    if not split_root.is_dir():
        raise DataError(f"{split_root}: missing split folder "
                        f"(expected {split_root.name}/wav and {split_root.name}/faces)")
    for name in ("wav", "aac"):
        if (split_root / name).is_dir():
            return split_root / name
    raise DataError(f"{split_root}: no wav/ or aac/ folder of <speaker>/<video>/<utterance> audio")


def iter_utterances(split_root: str | Path):
    """(speaker, video, utterance stem, audio path) of every utterance, in sorted order.

    When one utterance has several audio files (``x.m4a`` converted in place to ``x.wav``), the
    first of :data:`AUDIO_SUFFIXES` wins, so converted trees are not counted twice.
    """
    audio_root = audio_dir(split_root)
    rank = {s: i for i, s in enumerate(AUDIO_SUFFIXES)}
    for spk in _scandir_sorted(str(audio_root)):
        if not spk.is_dir():
            continue
        for video in _scandir_sorted(spk.path):
            if not video.is_dir():
                continue
            best: dict[str, tuple[int, str]] = {}
            for f in _scandir_sorted(video.path):
                stem, suffix = os.path.splitext(f.name)
                r = rank.get(suffix.lower())
                if r is not None and (stem not in best or r < best[stem][0]):
                    best[stem] = (r, f.path)
            for stem in sorted(best):
                yield spk.name, video.name, stem, best[stem][1]


def frame_paths(face_dir: str | Path) -> list[str]:
    """Sorted image files of one utterance's face folder ([] when the folder is missing)."""
    return [e.path for e in _scandir_sorted(str(face_dir)) if e.name.lower().endswith(FRAME_SUFFIXES)]


def audio_header(path: str) -> tuple[float, int, str]:
    """(duration s, sample rate, fault) from the file's header only ("" when fine; NaN/0 when unknown).

    Compressed audio (.m4a) is not opened: only an empty file is a fault there.
    """
    try:
        if os.path.getsize(path) == 0:
            return float("nan"), 0, "empty file (0 bytes)"
    except OSError as e:
        return float("nan"), 0, f"cannot stat ({e.strerror})"
    if path.lower().endswith(".m4a"):
        return float("nan"), 0, ""
    try:
        with sf.SoundFile(path) as f:  # header only; ~2x cheaper than sf.info, which formats strings
            frames, rate = f.frames, int(f.samplerate)
    except (RuntimeError, OSError) as e:  # sf.LibsndfileError is a RuntimeError
        return float("nan"), 0, f"unreadable audio ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    if frames == 0:
        return 0.0, rate, "empty audio (0 samples)"
    return frames / rate, rate, ""


def scan_split(split_root: str | Path, *, faces_root: str | Path | None = None, progress: bool = False) -> pd.DataFrame:
    """:data:`MANIFEST_COLUMNS` plus ``sample_rate`` and ``audio_fault`` (from headers), sorted by key."""
    split_root = Path(split_root)
    faces_root = str(faces_root) if faces_root is not None else os.path.join(split_root, "faces")
    rows = []
    for spk, video, utt, audio in tqdm(iter_utterances(split_root), desc=f"manifest {split_root.name}",
                                       disable=not progress, unit=" utt"):
        frames = frame_paths(os.path.join(faces_root, spk, video, utt))
        duration, rate, fault = audio_header(audio)
        rows.append((spk, video, utt, f"{spk}/{video}/{utt}.wav", audio, frames, len(frames), duration, rate, fault))
    if not rows:
        raise DataError(f"{audio_dir(split_root)}: no utterances found "
                        "(expected <speaker>/<video>/<utterance>.wav or .m4a)")
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS + ["sample_rate", "audio_fault"])
    return df.sort_values("key", ignore_index=True, kind="stable")


def build_manifest(split_root: str | Path, *, faces_root: str | Path | None = None,
                   progress: bool = False) -> pd.DataFrame:
    """One row per utterance of a split, sorted by key.

    Audio is found under ``split_root/wav/`` (or ``split_root/aac/`` when there is no ``wav/``) as
    ``<speaker>/<video>/<utterance>.{wav,flac,m4a}``; face frames under ``faces_root`` (default
    ``split_root/faces``) as ``<speaker>/<video>/<utterance>/*.jpg``. Columns: speaker, video,
    utterance, key (``spk/video/utt.wav`` whatever the container), audio_path, frame_paths (sorted
    list of str; empty when the utterance has no face folder), n_frames, duration (seconds, from
    the header; NaN for .m4a and unreadable files -- :func:`load_audio` names those when read).
    An empty or missing split raises :class:`DataError`.
    """
    return scan_split(split_root, faces_root=faces_root, progress=progress)[MANIFEST_COLUMNS]


# ------------------------------------------------------------------------------------------ audio
def m4a_decoder() -> str:
    """How .m4a is decoded here: "torchcodec", "ffmpeg" (a binary on PATH) or "none"."""
    try:  # torchcodec (and torch) only load when an .m4a file is read: the trial-list readers stay light
        import torchcodec.decoders  # noqa: F401

        return "torchcodec"
    except Exception:  # not installed, or its FFmpeg libraries are missing
        pass
    return "ffmpeg" if shutil.which("ffmpeg") else "none"


def _decode_m4a(path: Path, sample_rate: int) -> np.ndarray:
    decoder = m4a_decoder()
    if decoder == "none":
        raise DataError(f"{path}: cannot decode .m4a here (neither torchcodec nor an ffmpeg binary); {CONVERT_HINT}")
    if decoder == "torchcodec":
        from torchcodec.decoders import AudioDecoder  # loads torch: only when an .m4a file is decoded

        try:
            samples = AudioDecoder(str(path), sample_rate=sample_rate, num_channels=1).get_all_samples()
        except Exception as e:  # torchcodec raises RuntimeError/ValueError with FFmpeg's message
            raise DataError(f"{path}: torchcodec could not decode it ({e})") from None
        return samples.data.numpy().reshape(-1).astype(np.float32)
    proc = subprocess.run([shutil.which("ffmpeg") or "ffmpeg", "-nostdin", "-v", "error", "-i", str(path),
                           "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "-"], capture_output=True)
    if proc.returncode != 0:
        raise DataError(f"{path}: ffmpeg could not decode it: {proc.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def load_audio(path: str | Path, *, sample_rate: int = 16000) -> np.ndarray:
    """(T,) float32 mono waveform.

    :class:`DataError` naming the file when it is unreadable, empty, at another sample rate or not
    mono (VoxCeleb is 16 kHz mono: resample and mix down offline, never silently here). ``.m4a`` is decoded with
    torchcodec or an ``ffmpeg`` binary (resampled to ``sample_rate``), else the error says how to
    convert it.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty audio file (0 bytes)")
    except OSError as e:
        raise DataError(f"{path}: cannot read audio ({e.strerror or e})") from None
    if path.suffix.lower() == ".m4a":
        wave = _decode_m4a(path, sample_rate)
    else:
        try:
            wave, sr = sf.read(path, dtype="float32", always_2d=True)  # (T, C)
        except (RuntimeError, OSError) as e:  # sf.LibsndfileError is a RuntimeError
            raise DataError(f"{path}: unreadable audio ({e})") from None
        if sr != sample_rate:
            raise DataError(f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz "
                            f"(resample it: ffmpeg -i in.wav -ar {sample_rate} -ac 1 out.wav)")
        if wave.shape[1] != 1:  # VoxCeleb is mono: a stereo file is a conversion gone wrong, not mixed down here
            raise DataError(f"{path}: {wave.shape[1]} channels, expected mono "
                            f"(mix it down: ffmpeg -i in.wav -ar {sample_rate} -ac 1 out.wav)")
        wave = wave[:, 0]
    if wave.size == 0:
        raise DataError(f"{path}: empty audio (0 samples)")
    return np.ascontiguousarray(wave, dtype=np.float32)


def load_frames(paths, *, size: int) -> np.ndarray:
    """(F, size, size, 3) uint8 RGB face frames, resized (bilinear) when needed."""
    paths = list(paths)
    if not paths:
        raise DataError("no face frames to load (an utterance without a face folder)")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as src:
                im = src.convert("RGB")  # forces a full decode: truncated files fail here
                if im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.BILINEAR)
                out[i] = np.asarray(im)
        except OSError as e:  # PIL.UnidentifiedImageError is an OSError
            raise DataError(f"{p}: unreadable face frame ({e})") from None
    return out
