"""The embedded corpus (cometa.data.synthetic) and the handcrafted baselines (cometa.evaluation.baselines)."""
from __future__ import annotations

import csv
import hashlib
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cometa.data import synthetic
from cometa.data.synthetic import SyntheticConfig, build_corpus, corpus_hash, default_root
from cometa.evaluation import baselines

CFG = SyntheticConfig(
    seed=3, n_train_speakers=6, n_test_speakers=6, videos_per_speaker=2, utterances_per_video=2,
    min_seconds=1.0, max_seconds=2.2, image_size=32, voice_twin_fraction=0.34, face_twin_fraction=0.34,
    n_trials_o=40, n_trials_e=80, n_trials_h=40,
)
VIDEO_RE = re.compile(r"^[A-Za-z0-9_-]{11}$")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return build_corpus(CFG, tmp_path_factory.mktemp("corpus") / "c", progress=False, workers=1)


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file except corpus.json (which records the build time)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "corpus.json"}


def _speakers(root: Path) -> list[dict]:
    with open(root / "speakers.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r.update({k: float(r[k]) for k in synthetic.VOICE_LATENTS + synthetic.FACE_LATENTS})
    return rows


def _trials(root: Path, name: str) -> list[tuple[int, str, str]]:
    labels, enroll, test = baselines.read_trials(root / "trials" / synthetic.TRIAL_FILES[name])
    return list(zip(labels.tolist(), enroll, test))


def test_layout_and_counts(corpus):
    meta = json.loads((corpus / "corpus.json").read_text())
    assert meta["hash"] == corpus_hash(CFG) and meta["generator_version"] == synthetic.GENERATOR_VERSION
    assert meta["config"]["seed"] == CFG.seed and meta["build_seconds"] >= 0
    counts = meta["counts"]
    for split, n_spk, first in (("train", 6, "id00001"), ("test", 6, "id10001")):
        spks = sorted(p.name for p in (corpus / split / "wav").iterdir())
        assert spks[0] == first and len(spks) == n_spk == counts[f"{split}_speakers"]
        videos = sorted((corpus / split / "wav").glob("*/*"))
        assert len(videos) == n_spk * 2 == counts[f"{split}_videos"]
        assert all(VIDEO_RE.match(v.name) for v in videos)
        wavs = sorted((corpus / split / "wav").rglob("*.wav"))
        assert len(wavs) == n_spk * 4 == counts[f"{split}_utterances"]
        assert {w.name for w in wavs} == {"00001.wav", "00002.wav"}
        frames = list((corpus / split / "faces").rglob("*.jpg"))
        assert len(frames) == counts[f"{split}_frames"]
        for w in wavs:  # every utterance has its frame folder at the mirrored path
            assert (corpus / split / "faces" / w.relative_to(corpus / split / "wav").with_suffix("")).is_dir()
    rows = _speakers(corpus)
    expected = [f"id{i:05d}" for i in range(1, 7)] + [f"id{i:05d}" for i in range(10001, 10007)]
    assert [r["speaker"] for r in rows] == expected
    assert {r["split"] for r in rows} == {"train", "test"} and {r["gender"] for r in rows} <= {"m", "f"}
    for name in synthetic.TRIAL_FILES.values():
        assert (corpus / "trials" / name).is_file()
    assert counts["trials_O"] == 40 and counts["trials_E"] == 80 and counts["trials_H"] == 40


def test_same_seed_same_bytes_whatever_the_worker_count(corpus, tmp_path):
    # the fixture was built in-process (workers=1); this one by a pool of 2 processes in another dir
    again = build_corpus(CFG, tmp_path / "again", progress=False, workers=2)
    assert _digests(again) == _digests(corpus)
    a, b = (json.loads((r / "corpus.json").read_text()) for r in (corpus, again))
    a.pop("build_seconds"), b.pop("build_seconds")
    assert a == b


def test_different_seed_different_corpus(corpus, tmp_path):
    other = build_corpus(replace(CFG, seed=4), tmp_path / "o", progress=False, workers=1)
    mine, theirs = _digests(corpus), _digests(other)
    assert sorted(p.split("/")[3] for p in mine if p.startswith("test/wav/")) != \
        sorted(p.split("/")[3] for p in theirs if p.startswith("test/wav/"))  # other video ids
    wavs = lambda d: {v for k, v in d.items() if k.endswith(".wav")}  # noqa: E731
    assert not wavs(mine) & wavs(theirs)  # no utterance in common
    assert mine["speakers.csv"] != theirs["speakers.csv"]
    assert corpus_hash(replace(CFG, seed=4)) != corpus_hash(CFG)


def test_hash_and_default_root(monkeypatch, tmp_path):
    h = corpus_hash(CFG)
    assert re.fullmatch(r"[0-9a-f]{16}", h) and h == corpus_hash(replace(CFG))
    assert corpus_hash(replace(CFG, face_noise=0.06)) != h
    monkeypatch.setenv("COMETA_CACHE", str(tmp_path))
    assert default_root(CFG) == tmp_path / "corpora" / f"synthetic-{h}"
    monkeypatch.delenv("COMETA_CACHE")
    assert default_root(CFG) == Path.home() / ".cache" / "cometa" / "corpora" / f"synthetic-{h}"


def test_trial_files_parse(corpus):
    for name in "OEH":
        trials = _trials(corpus, name)
        assert len(trials) == {"O": 40, "E": 80, "H": 40}[name]
        for line in (corpus / "trials" / synthetic.TRIAL_FILES[name]).read_text().splitlines():
            assert len(line.split()) == 3
        for label, a, b in trials:
            assert a != b
            assert (corpus / "test" / "wav" / a).is_file() and (corpus / "test" / "wav" / b).is_file()
            assert label == int(a.split("/")[0] == b.split("/")[0])
            assert re.fullmatch(r"id1\d{4}/[A-Za-z0-9_-]{11}/\d{5}\.wav", a)
        assert sum(t[0] for t in trials) == len(trials) // 2  # half targets
    for label, a, b in _trials(corpus, "O"):  # targets cross sessions when a speaker has several
        assert not label or a.split("/")[1] != b.split("/")[1]


def test_hard_nontargets_are_similar_in_voice_and_face_and_of_one_gender(corpus):
    test_rows = [r for r in _speakers(corpus) if r["split"] == "test"]
    index = {r["speaker"]: i for i, r in enumerate(test_rows)}
    gender = {r["speaker"]: r["gender"] for r in test_rows}

    def pairs(name):
        return [(a.split("/")[0], b.split("/")[0]) for label, a, b in _trials(corpus, name) if label == 0]

    voice, face = synthetic.voice_latent_distances(test_rows), synthetic.face_latent_distances(test_rows)

    def mean_distance(dist, name):
        return np.mean([dist[index[a], index[b]] for a, b in pairs(name)])

    assert mean_distance(voice + face, "H") < 0.8 * mean_distance(voice + face, "O")  # the neighbours' metric
    assert mean_distance(voice, "H") < mean_distance(voice, "O")  # harder for either modality alone
    assert mean_distance(face, "H") < mean_distance(face, "O")
    twins = {(r["speaker"], r[f"{kind}_twin_of"]) for r in test_rows for kind in ("voice", "face")
             if r[f"{kind}_twin_of"]}
    h_pairs = set(pairs("H")) | {(b, a) for a, b in pairs("H")}
    assert twins & h_pairs  # the twins are among the hard impostors
    alone = {g for g in gender.values() if list(gender.values()).count(g) == 1}  # no impostor of one's own gender
    assert all(gender[a] == gender[b] or {gender[a], gender[b]} & alone for a, b in pairs("H"))


def _close(ra: dict, rb: dict, keys) -> bool:
    """Every latent within 6 % (0.5 absolute for the signed dB ones)."""
    return all(abs(ra[k] - rb[k]) <= (0.5 if k in ("tilt_db", "timbre_1", "timbre_2", "timbre_3", "timbre_4")
                                      else 0.06 * max(abs(ra[k]), abs(rb[k]))) for k in keys)


def test_twins_recorded_within_split(corpus):
    rows = {r["speaker"]: r for r in _speakers(corpus)}
    for kind, latents, other in (("voice", synthetic.VOICE_LATENTS, synthetic.FACE_LATENTS),
                                 ("face", synthetic.FACE_LATENTS, synthetic.VOICE_LATENTS)):
        pairs = [(s, r[f"{kind}_twin_of"]) for s, r in rows.items() if r[f"{kind}_twin_of"]]
        assert {r["split"] for s, r in rows.items() if r[f"{kind}_twin_of"]} == {"train", "test"}
        for a, b in pairs:
            ra, rb = rows[a], rows[b]
            assert rb[f"{kind}_twin_of"] == a and ra["split"] == rb["split"] and ra["gender"] == rb["gender"]
            assert _close(ra, rb, latents)  # near-identical in this modality ...
            assert not _close(ra, rb, other)  # ... not in the other
            assert not ra[f"{'face' if kind == 'voice' else 'voice'}_twin_of"]


def test_audio_is_16k_in_range_not_silent(corpus):
    for w in sorted((corpus / "test" / "wav").rglob("*.wav"))[:8]:
        info = sf.info(str(w))
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        y, _ = sf.read(str(w))
        assert CFG.min_seconds - 1e-3 <= len(y) / 16000 <= CFG.max_seconds + 1e-3
        assert np.abs(y).max() <= 1.0 and np.sqrt(np.mean(y ** 2)) > 0.01


def test_face_frames_count_and_size(corpus):
    for w in sorted((corpus / "train" / "wav").rglob("*.wav")):
        face_dir = corpus / "train" / "faces" / w.relative_to(corpus / "train" / "wav").with_suffix("")
        frames = sorted(face_dir.glob("*.jpg"))
        assert len(frames) == max(1, round(sf.info(str(w)).frames / 16000))
        assert [f.name for f in frames] == [f"{i:04d}.jpg" for i in range(1, len(frames) + 1)]
        im = Image.open(frames[0])
        assert im.mode == "RGB" and im.size == (32, 32)


def test_cached_second_call_returns_without_rewriting(corpus):
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*")}
    t0 = time.perf_counter()
    assert build_corpus(CFG, corpus, progress=False) == corpus
    assert time.perf_counter() - t0 < 0.5
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*")} == before


def test_interrupted_build_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # e.g. Ctrl-C half-way through
        return np.zeros(args[-1])

    monkeypatch.setattr(synthetic, "synth_utterance", broken)
    root = tmp_path / "c"
    with pytest.raises(KeyboardInterrupt):
        build_corpus(replace(CFG, n_train_speakers=2, n_test_speakers=2), root, progress=False, workers=1)
    assert not (root / "corpus.json").exists()
    # the partial build directory was removed too; the builders' lock file stays (a lock, not a partial build)
    assert [p.name for p in tmp_path.iterdir()] == [".c.lock"]


def test_a_killed_builders_partial_tree_is_removed_by_the_next_build(tmp_path):
    """SIGKILL runs no clean-up: the partial tree stays until the next builder, holding the lock (so
    no builder is alive), removes it."""
    cfg = replace(CFG, n_train_speakers=2, n_test_speakers=2)
    stale = tmp_path / ".c.partial-dead1234"
    (stale / "train").mkdir(parents=True)
    (stale / "train" / "half.wav").write_bytes(b"RIFF")
    build_corpus(cfg, tmp_path / "c", progress=False, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.lock", "c"]


def test_existing_foreign_root_is_an_error(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes|not the synthetic corpus"):
        build_corpus(CFG, tmp_path / "c", progress=False, workers=1)


def test_invalid_config_names_the_field():
    with pytest.raises(ValueError, match="min_seconds"):
        build_corpus(replace(CFG, min_seconds=3.0, max_seconds=2.0), progress=False)


def test_preset_config_reads_yaml():
    tiny = synthetic.preset_config("tiny")
    assert (tiny.n_train_speakers, tiny.n_test_speakers, tiny.image_size, tiny.n_trials_o) == (24, 8, 32, 200)
    demo = synthetic.preset_config("demo")  # the paper's regime (issue 12): >= 25 utterances over >= 5 sessions
    assert demo.videos_per_speaker >= 5 and demo.videos_per_speaker * demo.utterances_per_video >= 25
    assert (demo.n_test_speakers, demo.max_seconds, demo.image_size) == (40, 5.0, 64)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3)), min_size=2, max_size=6, unique_by=lambda t: t[0]),
       st.integers(2, 60), st.integers(0, 2 ** 16))
def test_make_trials_properties(shape, n, seed):
    """Any speakers x videos x utterances layout: n lines, n // 2 targets, labels right, no self-pairs."""
    utts = [(f"id{10000 + s}", f"v{v:010d}", f"{u:05d}") for s, (n_vid, n_utt) in enumerate(shape)
            for v in range(n_vid) for u in range(1, n_utt + 1)]
    if max(sum(1 for u in utts if u[0] == s) for s in {u[0] for u in utts}) < 2:
        return  # no target pair possible
    rng = np.random.default_rng(seed)
    trials = synthetic.make_trials(rng, utts, n)
    assert len(trials) == n and sum(t[0] for t in trials) == n // 2
    for label, a, b in trials:
        assert a != b and label == int(a.split("/")[0] == b.split("/")[0])


def test_baseline_embeddings(corpus):
    utts = [u for _, a, b in _trials(corpus, "O") for u in (a, b)][:10]
    audio = baselines.audio_baseline_embeddings([corpus / "test" / "wav" / u for u in utts])
    face = baselines.face_baseline_embeddings([corpus / "test" / "faces" / u[:-4] for u in utts], size=8)
    assert audio.shape == (10, 80) and face.shape == (10, 8 * 8 * 3)
    assert np.isfinite(audio).all() and np.isfinite(face).all()
    assert np.allclose(audio.mean(0), 0) and np.allclose(face.mean(0), 0, atol=1e-9)
    with pytest.raises(FileNotFoundError, match="no"):
        baselines.face_baseline_embeddings([corpus / "test"])


def _direct_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Where the piecewise-linear ROC (scikit-learn's, every threshold kept) crosses P_miss = P_fa."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    d = (1 - tpr) - fpr  # falls from +1 (reject all) to -1 (accept all)
    i = int(np.flatnonzero(d <= 0)[0])
    if d[i] == 0:
        return float(fpr[i])
    w = d[i - 1] / (d[i - 1] - d[i])
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def test_baseline_eers_on_tiny_corpus(corpus):
    eers = baselines.baseline_eers(corpus)
    assert set(eers) == {"audio", "face"}
    labels, enroll, test = baselines.read_trials(corpus / "trials" / "veri_test2.txt")
    utts = sorted(set(enroll) | set(test))
    emb = {"audio": baselines.audio_baseline_embeddings([corpus / "test" / "wav" / u for u in utts]),
           "face": baselines.face_baseline_embeddings([corpus / "test" / "faces" / u[:-4] for u in utts])}
    row = {u: i for i, u in enumerate(utts)}
    for name, e in emb.items():  # cosine of each trial, one at a time
        scores = np.array([e[row[a]] @ e[row[b]] / (np.linalg.norm(e[row[a]]) * np.linalg.norm(e[row[b]]))
                           for a, b in zip(enroll, test)])
        assert eers[name] == pytest.approx(_direct_eer(scores, np.asarray(labels)), abs=1e-9)


def test_the_test_split_can_have_its_own_shape(tmp_path):
    cfg = replace(CFG, n_train_speakers=2, n_test_speakers=3, test_videos_per_speaker=1, test_utterances_per_video=3)
    root = build_corpus(cfg, tmp_path / "c", progress=False, workers=1)
    counts = json.loads((root / "corpus.json").read_text())["counts"]
    assert (counts["train_videos"], counts["train_utterances"]) == (2 * 2, 2 * 2 * 2)  # as train: 2 videos x 2
    assert (counts["test_videos"], counts["test_utterances"]) == (3 * 1, 3 * 1 * 3)
    assert corpus_hash(cfg) != corpus_hash(replace(cfg, test_utterances_per_video=0))
