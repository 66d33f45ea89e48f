"""Which corpus a run uses (the embedded synthetic one, or VoxCeleb on disk), opened and checked.

:func:`open_corpus` reads a data root strictly (the first fault raises :class:`DataError`);
:func:`scan_corpus` walks the same root for ``cometa run --dry-run`` and collects every fault
instead. The layout is the one of :mod:`cometa.data.voxceleb`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cometa.config.sections import MISSING_FACES_POLICIES, CorpusConfig, SyntheticConfig  # noqa: F401 (re-exported)
from cometa.data.voxceleb import (
    DataError,
    build_manifest,
    check_trials,
    parse_trials,
    read_trials,
    scan_split,
    unknown_trials,
)

DEFAULT_TRIAL_LISTS = {"O": "veri_test2.txt", "E": "list_test_all2.txt", "H": "list_test_hard2.txt"}
SPLITS = ("train", "test")


@dataclass
class Corpus:
    """The manifests and trial lists of one data root (see :mod:`cometa.data.voxceleb` for the layout).

    ``train`` and ``test`` have one row per utterance (columns of ``MANIFEST_COLUMNS``);
    ``trials`` maps a short list name ("O", "E", "H") to DataFrame(label, enroll, test) indexed by
    line number; ``missing_faces`` lists (split, key) of utterances without face frames, whatever
    the policy; ``dropped_trials`` counts, per list, the trials dropped because they name an
    utterance excluded for missing faces.
    """

    root: Path
    train: pd.DataFrame
    test: pd.DataFrame
    trials: dict[str, pd.DataFrame]
    speakers: pd.DataFrame | None = None
    missing_faces: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["split", "key"]))
    dropped_trials: dict[str, int] = field(default_factory=dict)


def open_corpus(root: str | Path, *, trial_lists: dict[str, str] | None = None,
                missing_faces: str = "exclude", progress: bool = False) -> Corpus:
    """Read a data root: manifests of train/ and test/, and the trial lists checked against test/.

    ``trial_lists`` maps short names to files under ``root/trials`` (default
    :data:`DEFAULT_TRIAL_LISTS`); each must exist. Utterances without face frames are never ignored
    silently: ``missing_faces="exclude"`` drops them, and the trials naming them, with warnings;
    ``"audio_only"`` keeps them with no frames (audio training and evaluation only) with a warning;
    ``"error"`` raises naming the first face folder. Manifests are rebuilt on every call (no cache,
    so never stale).
    """
    root = Path(root)
    if missing_faces not in MISSING_FACES_POLICIES:
        raise ValueError(f"missing_faces must be exclude|audio_only|error, got {missing_faces!r}")
    trial_lists = dict(DEFAULT_TRIAL_LISTS if trial_lists is None else trial_lists)
    if not root.is_dir():
        raise DataError(f"{root}: data root not found")
    manifests, missing = {}, []
    for split in SPLITS:
        m = build_manifest(root / split, progress=progress)
        no_faces = (m["n_frames"] == 0).to_numpy()
        if no_faces.any():
            n = int(no_faces.sum())
            first = m[no_faces].iloc[0]
            where = root / split / "faces" / first["speaker"] / first["video"] / first["utterance"]
            if missing_faces == "error":
                raise DataError(f"{where}: no face frames for {first['key']} ({n} utterance(s) in {split}/ "
                                "have none; set corpus.missing_faces to exclude or audio_only)")
            missing.append(pd.DataFrame({"split": split, "key": m.loc[no_faces, "key"].to_numpy()}))
            action = "excluded" if missing_faces == "exclude" else "kept audio-only"
            warnings.warn(f"{root / split}: {n} of {len(m)} utterance(s) without face frames, {action} "
                          f"(first: {where})", stacklevel=2)
            if missing_faces == "exclude":
                m = m[~no_faces].reset_index(drop=True)
                if m.empty:
                    raise DataError(f"{root / split / 'faces'}: no utterance has face frames "
                                    "(missing_faces=exclude leaves nothing)")
        manifests[split] = m
    missing_df = pd.concat(missing, ignore_index=True) if missing else pd.DataFrame(columns=["split", "key"])
    excluded = set(missing_df.loc[missing_df["split"] == "test", "key"]) if missing_faces == "exclude" else set()
    trials, dropped = {}, {}
    for name, fname in trial_lists.items():
        path = root / "trials" / fname
        if not path.is_file():
            raise DataError(f"{path}: trial list {name!r} not found")
        tr = read_trials(path)
        if excluded:
            gone = (tr["enroll"].isin(excluded) | tr["test"].isin(excluded)).to_numpy()
            dropped[name] = int(gone.sum())
            if gone.any():
                warnings.warn(f"{path}: {dropped[name]} of {len(tr)} trial(s) dropped, they name utterances "
                              "excluded for missing face frames", stacklevel=2)
            tr = tr[~gone]  # the index keeps the file's line numbers for check_trials
        check_trials(tr, manifests["test"]["key"], path=path)
        trials[name] = tr
    speakers = pd.read_csv(root / "speakers.csv") if (root / "speakers.csv").is_file() else None
    return Corpus(root=root, train=manifests["train"], test=manifests["test"], trials=trials, speakers=speakers,
                  missing_faces=missing_df, dropped_trials=dropped)


def _split_counts(m: pd.DataFrame) -> dict:
    return {"speakers": int(m["speaker"].nunique()), "videos": int(m[["speaker", "video"]].drop_duplicates().shape[0]),
            "utterances": int(len(m)), "frames": int(m["n_frames"].sum()),
            "hours": round(float(np.nansum(m["duration"].to_numpy(dtype=float))) / 3600, 3)}


def describe_corpus(corpus: Corpus) -> dict:
    """Nested counts: ``{"train": {speakers, videos, utterances, frames, hours}, "test": {...},
    "trials": {name: {trials, targets}}, "missing_faces": n, "dropped_trials": n}``."""
    return {"train": _split_counts(corpus.train), "test": _split_counts(corpus.test),
            "trials": {n: {"trials": int(len(t)), "targets": int(t["label"].sum())} for n, t in corpus.trials.items()},
            "missing_faces": int(len(corpus.missing_faces)),
            "dropped_trials": int(sum(corpus.dropped_trials.values()))}


def scan_corpus(root: str | Path, *, trial_lists: dict[str, str] | None = None, sample_rate: int = 16000,
                max_listed: int = 5) -> dict:
    """Check a data root without raising on data faults: ``{"counts": ..., "faults": [str, ...]}``.

    ``counts`` has the layout of :func:`describe_corpus` (``counts["train"]["utterances"]``; zeros
    for a missing split; per split also ``m4a``; per trial list also ``malformed`` and
    ``not_found``). Each fault is one line naming the file (and lines), listing at most
    ``max_listed`` examples: missing split folders, utterances without face frames, unreadable or
    empty audio and wrong sample rates (from headers only; .m4a is counted, not decoded), missing
    trial files, malformed trial lines, trial entries not in the test manifest.
    """
    root = Path(root)
    trial_lists = dict(DEFAULT_TRIAL_LISTS if trial_lists is None else trial_lists)
    zero = {"speakers": 0, "videos": 0, "utterances": 0, "frames": 0, "hours": 0.0, "m4a": 0}
    counts: dict = {split: dict(zero) for split in SPLITS}
    counts.update(trials={}, missing_faces=0)
    faults: list[str] = []

    def listed(items) -> str:
        items = list(items)
        more = f", ... (+{len(items) - max_listed} more)" if len(items) > max_listed else ""
        return ", ".join(str(i) for i in items[:max_listed]) + more

    if not root.is_dir():
        faults.append(f"{root}: data root not found")
    test_keys = None
    for split in SPLITS:
        try:
            m = scan_split(root / split)
        except DataError as e:
            faults.append(str(e))
            continue
        counts[split] = {**_split_counts(m), "m4a": int(m["audio_path"].str.lower().str.endswith(".m4a").sum())}
        if split == "test":
            test_keys = m["key"]
        no_faces = m[m["n_frames"] == 0]
        counts["missing_faces"] += len(no_faces)
        if len(no_faces):
            folders = (str(root / split / "faces" / s / v / u) for s, v, u in
                       zip(no_faces["speaker"], no_faces["video"], no_faces["utterance"]))
            faults.append(f"{root / split / 'faces'}: {len(no_faces)} utterance(s) without face frames: "
                          + listed(folders))
        by_kind: dict[str, list[str]] = {}
        for path, fault in zip(m["audio_path"], m["audio_fault"]):
            if fault:  # "empty file (0 bytes)", "unreadable audio (Format not recognised)", ...
                kind, _, detail = fault.partition(" (")
                by_kind.setdefault(kind, []).append(f"{path} ({detail}" if detail else path)
        wrong_rate = m[(m["audio_fault"] == "") & (m["sample_rate"] != 0) & (m["sample_rate"] != sample_rate)]
        if len(wrong_rate):
            by_kind[f"audio file(s) not at {sample_rate} Hz"] = [
                f"{p} ({r} Hz)" for p, r in zip(wrong_rate["audio_path"], wrong_rate["sample_rate"])]
        for kind, items in by_kind.items():
            faults.append(f"{root / split}: {len(items)} {kind}: {listed(items)}")
    for name, fname in trial_lists.items():
        path = root / "trials" / fname
        if not path.is_file():
            faults.append(f"{path}: trial list {name!r} not found")
            continue
        try:
            tr, bad = parse_trials(path)
        except DataError as e:
            faults.append(str(e))
            continue
        unknown = unknown_trials(tr, test_keys) if test_keys is not None else unknown_trials(tr.iloc[:0], [])
        counts["trials"][name] = {"trials": int(len(tr)), "targets": int(tr["label"].sum()),
                                  "malformed": len(bad), "not_found": int(len(unknown))}
        if bad:
            faults.append(f"{path}: {len(bad)} malformed trial line(s) (expected 'label enroll test', label 0/1): "
                          + listed(f"line {no} {text!r}" for no, text in bad))
        if not len(tr) and not bad:
            faults.append(f"{path}: no trials in the list")
        if len(unknown):
            faults.append(f"{path}: {len(unknown)} trial(s) name utterances not in {root / 'test'}: "
                          + listed(f"line {no} {key}" for no, key in zip(unknown["line"], unknown["key"])))
    return {"counts": counts, "faults": faults}
