"""Which corpus a run uses (the embedded synthetic one, or VoxCeleb on disk), opened and checked."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cometa.data.synthetic import SyntheticConfig
from cometa.data.voxceleb import DataError, build_manifest, check_trials, read_trials


@dataclass
class CorpusConfig:
    kind: str = "voxceleb"  # synthetic | voxceleb
    root: str = ""  # data root; for synthetic "" = cache dir keyed by the generator config
    missing_faces: str = "exclude"  # exclude | audio_only | error
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def validate(self) -> None:
        if self.kind not in ("synthetic", "voxceleb"):
            raise ValueError(f"corpus.kind must be 'synthetic' or 'voxceleb', got {self.kind!r}")
        if self.missing_faces not in ("exclude", "audio_only", "error"):
            raise ValueError(f"corpus.missing_faces must be exclude|audio_only|error, got {self.missing_faces!r}")


@dataclass
class Corpus:
    """The manifests and trial lists of one data root (see :mod:`cometa.data.voxceleb` for the layout).

    ``train`` and ``test`` have one row per utterance (columns of ``MANIFEST_COLUMNS``);
    ``trials`` maps a short list name ("O", "E", "H") to DataFrame(label, enroll, test);
    ``missing_faces`` lists (split, key) of utterances without face frames, whatever the policy.
    """

    root: Path
    train: pd.DataFrame
    test: pd.DataFrame
    trials: dict[str, pd.DataFrame]
    speakers: pd.DataFrame | None = None
    missing_faces: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["split", "key"]))
    dropped_trials: dict[str, int] = field(default_factory=dict)


def open_corpus(root: str | Path, *, trial_lists: dict[str, str] | None = None,
                missing_faces: str = "exclude") -> Corpus:
    """Read a data root: manifests of train/ and test/, and the trial lists checked against test/.

    Utterances without face frames are never ignored silently: ``missing_faces="exclude"`` drops
    them (and the trials naming them) with a warning, ``"audio_only"`` keeps them with no frames
    (they take part in audio training and evaluation only), ``"error"`` raises naming the first.
    """
    root = Path(root)
    if missing_faces not in ("exclude", "audio_only", "error"):
        raise ValueError(f"missing_faces must be exclude|audio_only|error, got {missing_faces!r}")
    trial_lists = dict(trial_lists or {"O": "veri_test2.txt", "E": "list_test_all2.txt", "H": "list_test_hard2.txt"})
    if not root.is_dir():
        raise DataError(f"{root}: data root not found")
    manifests, missing = {}, []
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataError(f"{root / split}: missing split folder (expected {split}/wav and {split}/faces)")
        m = build_manifest(root / split)
        no_faces = m["n_frames"] == 0
        if no_faces.any():
            first = m[no_faces].iloc[0]
            where = root / split / "faces" / first["speaker"] / first["video"] / first["utterance"]
            if missing_faces == "error":
                raise DataError(f"{where}: no face frames for {first['key']} ({int(no_faces.sum())} utterance(s) "
                                f"in {split}/ have none; set corpus.missing_faces to exclude or audio_only)")
            missing.append(pd.DataFrame({"split": split, "key": m.loc[no_faces, "key"]}))
            action = "excluded" if missing_faces == "exclude" else "kept audio-only"
            warnings.warn(f"{root / split}: {int(no_faces.sum())} utterance(s) without face frames, {action} "
                          f"(first: {where})", stacklevel=2)
            if missing_faces == "exclude":
                m = m[~no_faces].reset_index(drop=True)
        manifests[split] = m
    trials, dropped = {}, {}
    excluded = set(pd.concat(missing)["key"]) if (missing and missing_faces == "exclude") else set()
    for name, fname in trial_lists.items():
        path = root / "trials" / fname
        if not path.exists():
            raise DataError(f"{path}: trial list {name!r} not found")
        tr = read_trials(path)
        if excluded:
            gone = tr["enroll"].isin(excluded) | tr["test"].isin(excluded)
            dropped[name] = int(gone.sum())
            tr = tr[~gone].reset_index(drop=True)
        check_trials(tr, manifests["test"]["key"], path=path)
        trials[name] = tr
    speakers = pd.read_csv(root / "speakers.csv") if (root / "speakers.csv").exists() else None
    return Corpus(root=root, train=manifests["train"], test=manifests["test"], trials=trials, speakers=speakers,
                  missing_faces=pd.concat(missing, ignore_index=True) if missing else
                  pd.DataFrame(columns=["split", "key"]), dropped_trials=dropped)


def _split_counts(m: pd.DataFrame) -> dict:
    return {"speakers": int(m["speaker"].nunique()), "videos": int(m[["speaker", "video"]].drop_duplicates().shape[0]),
            "utterances": int(len(m)), "frames": int(m["n_frames"].sum()),
            "hours": round(float(np.nansum(m["duration"])) / 3600, 3)}


def describe_corpus(corpus: Corpus) -> dict:
    """Nested counts: per split speakers/videos/utterances/frames/hours, per trial list trials/targets."""
    return {"train": _split_counts(corpus.train), "test": _split_counts(corpus.test),
            "trials": {n: {"trials": int(len(t)), "targets": int(t["label"].sum())} for n, t in corpus.trials.items()},
            "missing_faces": int(len(corpus.missing_faces)),
            "dropped_trials": int(sum(corpus.dropped_trials.values()))}


def scan_corpus(root: str | Path, *, trial_lists: dict[str, str], sample_rate: int = 16000,
                max_listed: int = 5) -> dict:
    """Check a data root without raising: ``{"counts": ..., "faults": [one line per fault]}``.

    Cheap checks only (directory walks and audio headers; .m4a files are counted, not decoded):
    missing split folders, utterances without face frames, unreadable/empty audio, wrong sample
    rates, malformed trial lines, trial entries not in the test manifest, missing trial files.
    """
    import soundfile as sf

    root = Path(root)
    counts: dict = {}
    faults: list[str] = []

    def listed(items: list[str]) -> str:
        more = f", ... (+{len(items) - max_listed})" if len(items) > max_listed else ""
        return ", ".join(items[:max_listed]) + more

    test_keys: set[str] = set()
    for split in ("train", "test"):
        try:
            m = build_manifest(root / split)
        except DataError as e:
            faults.append(str(e))
            continue
        c = _split_counts(m)
        c["m4a"] = int(m["audio_path"].str.lower().str.endswith(".m4a").sum())
        counts[split] = c
        if split == "test":
            test_keys = set(m["key"])
        no_faces = m.loc[m["n_frames"] == 0, "key"].tolist()
        if no_faces:
            faults.append(f"{root / split / 'faces'}: {len(no_faces)} utterance(s) without face frames: {listed(no_faces)}")
        bad_audio, bad_rate, empty = [], [], []
        for path in m["audio_path"]:
            if path.lower().endswith(".m4a"):
                continue
            try:
                if os.path.getsize(path) == 0:
                    empty.append(path)
                    continue
                info = sf.info(path)
            except (RuntimeError, sf.LibsndfileError, OSError):
                bad_audio.append(path)
                continue
            if info.frames == 0:
                empty.append(path)
            elif info.samplerate != sample_rate:
                bad_rate.append(f"{path} ({info.samplerate} Hz)")
        for what, items in (("unreadable audio", bad_audio), ("empty audio", empty),
                            (f"audio not at {sample_rate} Hz", bad_rate)):
            if items:
                faults.append(f"{root / split}: {len(items)} {what}: {listed(items)}")
    counts["trials"] = {}
    for name, fname in trial_lists.items():
        path = root / "trials" / fname
        if not path.exists():
            faults.append(f"{path}: trial list {name!r} not found")
            continue
        try:
            tr = read_trials(path)
        except DataError as e:
            faults.append(str(e))
            continue
        unknown = ~tr["enroll"].isin(test_keys) | ~tr["test"].isin(test_keys)
        counts["trials"][name] = {"trials": int(len(tr)), "targets": int(tr["label"].sum()),
                                  "not_found": int(unknown.sum())}
        if unknown.any() and test_keys:
            lines = [f"line {i + 1}" for i in np.flatnonzero(unknown.to_numpy())]
            faults.append(f"{path}: {int(unknown.sum())} trial(s) name utterances not in test/: {listed(lines)}")
    return {"counts": counts, "faults": faults}
