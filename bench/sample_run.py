"""A deterministic, plausible run directory in the pipeline's format, of any size: the dashboard
benchmark's (``bench/bench_dashboard.py``: 8,000 utterances x 5 rounds, which a real run on a laptop
would take hours to make). The tests use a real tiny run instead (``tests/conftest.py``), which
cannot drift from what the pipeline writes.

``build_sample_run(run_dir)`` writes config.yaml, store.sqlite (table ``scalars``), the executed
notebooks (with papermill metadata) and done markers (as ``RunStore.mark_done`` writes them) of every
step (corpus, stage1, <strategy>/round_<r>, projections), and per strategy and round labels.parquet,
embeddings.npz, projection.parquet and scores.npz. Pseudo labels get purer and EERs
fall from round to round (cometa best, then Co-teaching+, then the baseline, as in the paper's
Table 1). Label-quality and EER scalars are computed from the files written, so the two agree.
A tiny media corpus (wav + jpg faces) is written under ``corpus/data`` and named in ``corpus.root``.
"""
from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.stats import norm
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

STRATEGIES = ("baseline", "coteaching_plus", "cometa")
_STRENGTH = {"baseline": 1.0, "coteaching_plus": 0.9, "cometa": 0.75}  # EER and noise multipliers
_LISTS = {"O": 1.0, "E": 1.1, "H": 1.9}
_MODALITY = {"audio": 1.0, "visual": 1.15, "fused": 0.8}
STAGE1_EER = 0.0716
EPOCHS_PER_ROUND = 4
TAU, E_K = 0.2, 10
_T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def build_sample_run(run_dir: str | Path, *, strategies: tuple[str, ...] = STRATEGIES, rounds: int = 3,
                     n: int = 300, seed: int = 0, media: bool = True) -> Path:
    """Write a complete run directory at ``run_dir`` (created) and return its path.

    ``media=False`` skips the wav/jpg corpus (for large ``n`` in benchmarks).
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_spk = max(n // 10, 4)
    spk = np.arange(n) % n_spk
    keys = [f"id{s:05d}/vid{(i // n_spk) % 2}/{i:05d}.wav" for i, s in enumerate(spk)]
    speaker = np.array([f"id{s:05d}" for s in spk])
    media_root = run / "corpus" / "data"
    if media:
        _write_media(media_root, keys, spk)
    _write_config(run, strategies, rounds, n_spk, seed, media_root)
    clock = [_T0]
    rows = corpus_and_stage1(run, clock, n=n, preset="tiny", seconds=(12.0, 40.0), stage1_text="Stage I EER 7.16 %")

    d = 16
    centres = rng.normal(size=(n_spk, d)) * 3
    face_centres = rng.normal(size=(n_spk, d)) * 3
    hard = rng.random(n) < 0.15  # hard utterances are wrong in both modalities more often
    for strategy in strategies:
        k = _STRENGTH[strategy]
        prev = None
        for r in range(1, rounds + 1):
            out = run / strategy / f"round_{r}"
            out.mkdir(parents=True, exist_ok=True)
            noise = 0.35 * k * 0.55 ** (r - 1)
            labels = _labels(rng, keys, speaker, spk, n_spk, noise, hard, merge=max(3 - r, 0))
            labels.to_parquet(out / "labels.parquet", index=False)
            spread = 1.0 + 2.0 * noise
            audio = centres[spk] + rng.normal(size=(n, d)) * spread
            visual = face_centres[spk] + rng.normal(size=(n, d)) * spread * 1.1
            joint = np.concatenate([_l2(audio), _l2(visual)], axis=1)
            np.savez(out / "embeddings.npz", keys=np.array(keys), audio=audio, visual=visual, joint=joint)
            _projection(keys, spk, n_spk, spread, rng).to_parquet(out / "projection.parquet", index=False)
            rows += _label_rows(strategy, r, labels, prev)
            rows += _train_rows(strategy, r, noise, rng)
            eers = {}
            arrays = {}
            for lst, f in _LISTS.items():
                per_mod = {}
                for m, fm in _MODALITY.items():
                    target = STAGE1_EER * k * 0.62 ** r * f * fm
                    s, y = _scores(target, 1000 if lst == "O" else 1500)
                    arrays[f"{lst}_{m}"], arrays[f"{lst}_labels"] = s, y
                    per_mod[m] = (s, y)
                eers[lst] = per_mod
            np.savez(out / "scores.npz", **arrays)
            for lst, per_mod in eers.items():
                rows += _eval_rows(strategy, r, per_mod, lst=lst)
            _step(run, f"{strategy}/round_{r}", "round.ipynb", clock, 30.0 + 5 * r,
                  {"strategy": strategy, "round": r}, f"{strategy} round {r}")
            prev = labels
    _step(run, "projections", "projections.ipynb", clock, 8.0 * len(strategies),
          {"strategies": ",".join(strategies), "rounds": rounds}, "projections of every round")
    _write_store(run / "store.sqlite", run.name, rows)
    return run


# ----------------------------------------------------------------------------------------------- labels
def _labels(rng, keys, speaker, spk, n_spk, noise, hard, *, merge: int) -> pd.DataFrame:
    """Per-view cluster ids: a permutation of the speakers, ``merge`` pairs of speakers merged, one
    speaker split by video while ``merge`` > 0, and per-view noise (hard utterances wrong in both)."""
    perm = rng.permutation(n_spk)
    base = perm[spk].copy()
    for j in range(merge):  # speakers 2j and 2j+1 share a cluster
        base[spk == 2 * j + 1] = perm[2 * j]
    if merge:
        vid = np.array([k.split("/")[1] == "vid1" for k in keys])
        base[(spk == n_spk - 1) & vid] = n_spk  # an extra cluster: speaker n_spk-1 split in two
    k_total = n_spk + 1
    views = {}
    for view, scale in (("joint", 0.7), ("audio", 1.0), ("visual", 1.2)):
        p = np.where(hard, np.minimum(0.9, 3 * noise * scale), noise * scale * 0.6)
        wrong = rng.random(len(keys)) < p
        lab = base.copy()
        lab[wrong] = (base[wrong] + rng.integers(1, k_total, wrong.sum())) % k_total
        views[view] = lab
    a, v, jn = views["audio"], views["visual"], views["joint"]
    consensus = np.where((a == v) | (a == jn), a, np.where(v == jn, v, -1))
    return pd.DataFrame({"key": keys, "speaker": speaker, "audio": a, "visual": v, "joint": jn,
                         "consensus": consensus.astype(int), "kept": consensus >= 0})


def _purity(pred: np.ndarray, true: np.ndarray) -> float:
    ct = pd.crosstab(pred, true)
    return float(ct.max(axis=1).sum() / len(pred))


def _label_rows(strategy, r, labels, prev) -> list[tuple]:
    rows = []
    for view in ("audio", "visual", "joint", "consensus"):
        lab = labels[labels[view] >= 0] if view == "consensus" else labels
        pred, true = lab[view].to_numpy(), lab["speaker"].to_numpy()
        vals = {"purity": _purity(pred, true), "inverse_purity": _purity(true, pred),
                "nmi": normalized_mutual_info_score(true, pred), "ari": adjusted_rand_score(true, pred),
                "n_clusters": float(len(np.unique(pred))), "kept_frac": float(len(lab) / len(labels))}
        if prev is not None:  # ids are arbitrary per round: map each previous cluster to its majority now
            ct = pd.crosstab(prev[view], labels[view])
            mapped = prev[view].map(ct.idxmax(axis=1))
            vals["flip_rate"] = float((mapped.to_numpy() != labels[view].to_numpy()).mean())
        rows += [_row(strategy, "labels", r, None, None, view, name, v) for name, v in vals.items()]
    a, v, j = (labels[c].to_numpy() for c in ("audio", "visual", "joint"))
    agree = (a == v) & (v == j)
    differ = (a != v) & (v != j) & (a != j)
    for name, v_ in (("vote_all_agree", agree.sum()), ("vote_two_agree", (~agree & ~differ).sum()),
                     ("vote_all_differ", differ.sum())):
        rows.append(_row(strategy, "labels", r, None, None, "consensus", name, float(v_)))
    return rows


# --------------------------------------------------------------------------------------------- training
def _train_rows(strategy, r, noise, rng) -> list[tuple]:
    rows = []
    for j in range(1, EPOCHS_PER_ROUND + 1):
        e = (r - 1) * EPOCHS_PER_ROUND + j
        decay = 0.85 ** e
        for m, off in (("audio", 0.0), ("visual", 0.3)):
            if strategy == "baseline":
                rows.append(_row(strategy, "train", r, e, None, m, "loss", 4.0 * decay + off))
            else:
                rows.append(_row(strategy, "train", r, e, None, m, "loss_support", 4.0 * decay + off))
                rows.append(_row(strategy, "train", r, e, None, m, "loss_query", 3.0 * decay + off))
                rows.append(_row(strategy, "train", r, e, None, m, "selected_noisy_frac", noise * 0.5 * (1 + off)))
            for s in range(3):  # a few per-step rows, as the trainer writes where cheap
                step = ((e - 1) * 3 + s + 1)
                name = "loss" if strategy == "baseline" else "loss_support"
                rows.append(_row(strategy, "train", r, e, step, m, name, 4.0 * decay + off + 0.1 * s))
        if strategy == "baseline":
            continue
        lam = 1 - min(e / E_K * TAU, TAU)
        dis = (0.45 if strategy == "cometa" else 0.38) * 0.9 ** e
        for s in range(3):  # per step, as the Stage II trainer logs it (modality NULL)
            rows.append(_row(strategy, "train", r, e, (e - 1) * 3 + s + 1, None, "disagreement_frac",
                             dis * (1 + 0.1 * rng.normal())))
        rows += [_row(strategy, "train", r, e, None, None, "lambda", lam),
                 _row(strategy, "train", r, e, None, None, "disagreement_frac", dis),
                 _row(strategy, "train", r, e, None, None, "selected_frac_audio", dis * lam),
                 _row(strategy, "train", r, e, None, None, "selected_frac_visual", dis * lam * 0.98),
                 _row(strategy, "train", r, e, None, None, "selection_overlap", (0.6 if strategy == "cometa" else 0.5)
                      + 0.02 * e),
                 _row(strategy, "train", r, e, None, None, "disagreement_noisy_frac", noise * 1.4),
                 _row(strategy, "train", r, e, None, None, "empty_disagreement_batches", float(e % 2))]
    return rows


# ------------------------------------------------------------------------------------------ evaluation
def _scores(eer: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantile-spaced Gaussian target/non-target scores whose EER is ~``eer`` (no sampling noise)."""
    dprime = -2 * norm.ppf(eer)
    q = (np.arange(n) + 0.5) / n
    tgt, non = dprime + norm.ppf(q), norm.ppf(q)
    return np.concatenate([tgt, non]), np.concatenate([np.ones(n, np.int8), np.zeros(n, np.int8)])


def eer_min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float) -> tuple[float, float]:
    """EER (fraction) and normalised minDCF (C_miss = C_fa = 1) by sweeping every threshold."""
    order = np.argsort(scores, kind="stable")
    y = labels[order].astype(float)
    n_t, n_n = y.sum(), len(y) - y.sum()
    p_miss = np.concatenate([[0], np.cumsum(y)]) / n_t
    p_fa = 1 - np.concatenate([[0], np.cumsum(1 - y)]) / n_n
    i = np.argmin(np.abs(p_miss - p_fa))
    eer = float((p_miss[i] + p_fa[i]) / 2)
    dcf = p_target * p_miss + (1 - p_target) * p_fa
    return eer, float(dcf.min() / min(p_target, 1 - p_target))


def corpus_and_stage1(run: Path, clock: list, *, n: int, preset: str, seconds: tuple[float, float],
                      stage1_text: str) -> list[tuple]:
    """The corpus and Stage I steps' done markers (``seconds``: their durations) and Stage I's scalars rows:
    5 epochs of contrastive loss and the audio EER / minDCF on each trial list."""
    _step(run, "corpus", "corpus.ipynb", clock, seconds[0], {"preset": preset}, f"corpus: {n} utterances")
    rows = [_row(None, "stage1", 0, e, None, None, "loss_csl", 5.0 * 0.8 ** e) for e in range(1, 6)]
    for lst, f in _LISTS.items():
        rows += _eval_rows(None, 0, {"audio": STAGE1_EER * f}, lst=lst)
    _step(run, "stage1", "stage1.ipynb", clock, seconds[1], {"epochs": 5}, stage1_text)
    return rows


def _eval_rows(strategy, r, per_mod, *, lst: str) -> list[tuple]:
    rows = []
    stage = f"eval/{lst}"
    for m, val in per_mod.items():
        if isinstance(val, tuple):
            eer, d1 = eer_min_dcf(*val, 0.01)
            _, d5 = eer_min_dcf(*val, 0.05)
        else:  # Stage I: the value itself (no score file is kept for Stage I)
            eer, d1, d5 = float(val), min(1.0, 6.5 * val), min(1.0, 4.5 * val)
        rows += [_row(strategy, stage, r, None, None, m, "eer", eer),
                 _row(strategy, stage, r, None, None, m, "min_dcf_0.01", d1),
                 _row(strategy, stage, r, None, None, m, "min_dcf_0.05", d5)]
    return rows


# --------------------------------------------------------------------------------------------- helpers
def _row(strategy, stage, r, epoch, step, modality, name, value) -> tuple:
    return (strategy, stage, int(r), epoch, step, modality, name, float(value))


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _projection(keys, spk, n_spk, spread, rng) -> pd.DataFrame:
    angle = 2 * np.pi * np.arange(n_spk) / n_spk
    frames = []
    for view, rot in (("audio", 0.0), ("visual", 0.4), ("joint", 0.2)):
        radius = 12 + 3 * (np.arange(n_spk) % 3)  # three rings, so neighbours on the circle stay apart
        cx, cy = (radius * np.cos(angle + rot))[spk], (radius * np.sin(angle + rot))[spk]
        jitter = rng.normal(size=(len(keys), 2)) * 0.45 * spread
        frames.append(pd.DataFrame({"key": keys, "view": view, "x": cx + jitter[:, 0], "y": cy + jitter[:, 1],
                                    "n_total": len(keys)}))
    return pd.concat(frames, ignore_index=True)


def _write_store(path: Path, run_id: str, rows: list[tuple]) -> None:
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE scalars (run TEXT, strategy TEXT, stage TEXT, round INTEGER, epoch INTEGER, "
                "step INTEGER, modality TEXT, name TEXT, value REAL, time REAL)")
    t = _T0.timestamp()
    con.executemany("INSERT INTO scalars VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [(run_id, *row, t + i) for i, row in enumerate(rows)])
    con.commit()
    con.close()


def _write_config(run: Path, strategies, rounds, n_spk, seed, media_root: Path) -> None:
    cfg = {"preset": "tiny", "seed": seed,
           "corpus": {"kind": "synthetic", "root": str(media_root)},
           "stage1": {"epochs": 5, "batch_size": 16},
           "clustering": {"k": n_spk, "niter": 10},
           "stage2": {"strategies": list(strategies), "rounds": rounds, "epochs_per_round": EPOCHS_PER_ROUND,
                      "tau": TAU, "e_k": E_K, "alpha": 0.01, "beta": 0.001},
           "eval": {"trial_lists": ["O", "E", "H"]},
           "projection": {"enabled": True, "max_points": 50000, "n_neighbors": 15, "min_dist": 0.1},
           "git_sha": "0123456789abcdef0123456789abcdef01234567"}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _step(run: Path, name: str, nb_name: str, clock: list, seconds: float, params: dict, text: str) -> None:
    """An executed notebook with papermill's metadata and the done marker ``RunStore.mark_done`` writes."""
    out = run / name
    out.mkdir(parents=True, exist_ok=True)
    start = clock[0]
    end = start + timedelta(seconds=seconds)
    clock[0] = end + timedelta(seconds=1)
    iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                       "papermill": {"start_time": iso(start), "end_time": iso(end), "duration": seconds,
                                     "status": "completed", "parameters": params, "exception": None,
                                     "input_path": f"notebooks/{nb_name}", "output_path": str(out / nb_name),
                                     "environment_variables": {}, "version": "2.7.0"}},
          "cells": [{"cell_type": "code", "id": "params", "metadata": {"tags": ["parameters"]},
                     "execution_count": 1, "outputs": [],
                     "source": "\n".join(f"{k} = {v!r}" for k, v in params.items())},
                    {"cell_type": "code", "id": "body", "metadata": {}, "execution_count": 2,
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": text + "\n"}],
                     "source": "print(...)"}]}
    (out / nb_name).write_text(json.dumps(nb, indent=1))
    (out / "done.json").write_text(json.dumps({"inputs_hash": hashlib.sha256(name.encode()).hexdigest()[:16],
                                               "finished_at": end.timestamp(), "seconds": seconds, "step": name,
                                               "started_at": start.timestamp()}))


def _write_media(root: Path, keys, spk) -> None:
    """0.25 s of a speaker-specific tone per utterance and two 32x32 face frames."""
    from PIL import Image

    sr = 16000
    t = np.arange(int(0.25 * sr)) / sr
    for key, s in zip(keys, spk):
        wav = root / "train" / "wav" / key
        wav.parent.mkdir(parents=True, exist_ok=True)
        tone = 0.3 * np.sin(2 * np.pi * (120 + 7 * s) * t) * np.hanning(len(t))
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sr)
            w.writeframes((tone * 32767).astype("<i2").tobytes())
        faces = root / "train" / "faces" / key[: -len(".wav")]
        faces.mkdir(parents=True, exist_ok=True)
        colour = np.array([(37 * s) % 255, (91 * s) % 255, (53 * s) % 255], np.uint8)
        for f in range(2):
            img = np.broadcast_to(colour, (32, 32, 3)).copy()
            img[8 + 4 * f:24, 10:22] = 230  # a "face"
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG")
            (faces / f"{f:04d}.jpg").write_bytes(buf.getvalue())
