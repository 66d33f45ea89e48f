"""VoxCeleb-shaped readers (cometa.data.voxceleb) and corpus open/describe/scan (cometa.data.corpus).

Every test that damages data works on a copy of the small corpus in ``tmp_path``; the shared
fixture stays intact.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from cometa.data import voxceleb
from cometa.data.corpus import describe_corpus, open_corpus, scan_corpus
from cometa.data.synthetic import TRIAL_FILES, SyntheticConfig, build_corpus
from cometa.data.voxceleb import (
    MANIFEST_COLUMNS,
    DataError,
    build_manifest,
    check_trials,
    load_audio,
    load_frames,
    read_trials,
)

CFG = SyntheticConfig(seed=5, n_train_speakers=2, n_test_speakers=3, videos_per_speaker=2, utterances_per_video=2,
                      min_seconds=1.0, max_seconds=1.6, image_size=16, n_trials_o=12, n_trials_e=16, n_trials_h=8)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return build_corpus(CFG, tmp_path_factory.mktemp("vox") / "c", progress=False, workers=1)


@pytest.fixture
def copy(corpus, tmp_path) -> Path:
    """A private copy of the corpus, free to damage."""
    return Path(shutil.copytree(corpus, tmp_path / "c"))


def _named(path) -> str:
    return re.escape(str(path))


def _test_utt_in_trials(root: Path) -> str:
    """The key of the enroll side of the O list's first trial."""
    return (root / "trials" / TRIAL_FILES["O"]).read_text().split()[1]


# ------------------------------------------------------------------------------------ manifests
def test_manifest_matches_files_on_disk(corpus):
    m = build_manifest(corpus / "test")
    assert list(m.columns) == MANIFEST_COLUMNS
    wavs = sorted((corpus / "test" / "wav").rglob("*.wav"))
    assert len(m) == len(wavs) == CFG.n_test_speakers * CFG.videos_per_speaker * CFG.utterances_per_video
    assert list(m["key"]) == sorted(str(w.relative_to(corpus / "test" / "wav")) for w in wavs)
    for row in m.itertuples():
        assert row.key == f"{row.speaker}/{row.video}/{row.utterance}.wav"
        assert Path(row.audio_path) == corpus / "test" / "wav" / row.key
        frames = sorted(str(p) for p in (corpus / "test" / "faces" / row.key[:-4]).glob("*.jpg"))
        assert row.frame_paths == frames and row.n_frames == len(frames) >= 1
        info = sf.info(row.audio_path)
        assert row.duration == pytest.approx(info.frames / info.samplerate)
    pd.testing.assert_frame_equal(m, build_manifest(corpus / "test"))  # deterministic


def test_manifest_m4a_key_is_wav_and_wav_wins_over_m4a(tmp_path):
    d = tmp_path / "train" / "aac" / "id00001" / "vid"
    d.mkdir(parents=True)
    (d / "00001.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A not really")  # never decoded by the manifest
    m = build_manifest(tmp_path / "train")
    assert list(m["key"]) == ["id00001/vid/00001.wav"] and m["audio_path"][0].endswith("00001.m4a")
    assert np.isnan(m["duration"][0]) and m["n_frames"][0] == 0 and m["frame_paths"][0] == []
    # converted in place: x.m4a and x.wav side by side are one utterance, read from the wav
    w = tmp_path / "train2" / "wav" / "id00001" / "vid"
    w.mkdir(parents=True)
    (w / "00001.m4a").write_bytes(b"junk")
    sf.write(w / "00001.wav", np.zeros(1600), 16000)
    m = build_manifest(tmp_path / "train2")
    assert len(m) == 1 and m["audio_path"][0].endswith("00001.wav") and m["duration"][0] == pytest.approx(0.1)


def test_empty_or_missing_split_names_the_folder(tmp_path):
    (tmp_path / "train" / "wav").mkdir(parents=True)
    with pytest.raises(DataError, match=_named(tmp_path / "train" / "wav") + ".*no utterances"):
        build_manifest(tmp_path / "train")
    with pytest.raises(DataError, match=_named(tmp_path / "test") + ".*missing split"):
        build_manifest(tmp_path / "test")


# ------------------------------------------------------------------------------------ trials
def test_read_trials_parses_and_skips_blank_lines(corpus, tmp_path):
    tr = read_trials(corpus / "trials" / TRIAL_FILES["O"])
    assert list(tr.columns) == ["label", "enroll", "test"] and tr["label"].dtype == np.int8
    assert len(tr) == CFG.n_trials_o and set(tr["label"]) == {0, 1}
    p = tmp_path / "t.txt"
    p.write_text("1 a/b/1.wav a/c/2.wav\n\n   \n0 a/b/1.wav d/e/3.wav\n")
    tr = read_trials(p)
    assert tr.values.tolist() == [[1, "a/b/1.wav", "a/c/2.wav"], [0, "a/b/1.wav", "d/e/3.wav"]]
    assert list(tr.index) == [1, 4]  # the file's line numbers


@pytest.mark.parametrize("bad", ["1 a/b/1.wav", "1 a/b/1.wav a/c/2.wav extra", "2 a/b/1.wav a/c/2.wav",
                                 "yes a/b/1.wav a/c/2.wav"])
def test_malformed_trial_line_names_file_line_and_text(tmp_path, bad):
    p = tmp_path / "veri.txt"
    p.write_text(f"1 a/b/1.wav a/c/2.wav\n\n{bad}\n")
    with pytest.raises(DataError, match=_named(p) + ":3: malformed trial line " + re.escape(repr(bad))):
        read_trials(p)


def test_trial_naming_an_unknown_utterance(corpus, tmp_path):
    p = tmp_path / "veri.txt"
    good = (corpus / "trials" / TRIAL_FILES["O"]).read_text().splitlines()[:2]
    p.write_text("\n".join(good + ["", "0 id10001/nope/00009.wav " + good[0].split()[1], "1 x/y/z.wav x/y/w.wav"]))
    keys = build_manifest(corpus / "test")["key"]
    with pytest.raises(DataError, match=_named(p) + r":4: .*'id10001/nope/00009.wav'.*\(2 of 4 trial"):
        check_trials(read_trials(p), keys, path=p)
    check_trials(read_trials(p).iloc[:2], keys, path=p)  # the good ones pass


# ------------------------------------------------------------------------------------ audio
def test_load_audio_reads_mono_float32(corpus, tmp_path):
    wav = next((corpus / "test" / "wav").rglob("*.wav"))
    y = load_audio(wav)
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) == sf.info(wav).frames
    stereo = np.stack([np.full(800, 0.5), np.full(800, -0.1)], 1)
    sf.write(tmp_path / "st.wav", stereo, 16000)
    with pytest.raises(DataError, match=_named(tmp_path / "st.wav") + ": 2 channels, expected mono"):
        load_audio(tmp_path / "st.wav")  # VoxCeleb is mono: not mixed down silently (tests/test_bad_inputs.py)


def test_load_audio_bad_files_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(DataError, match=_named(garbage) + ": unreadable audio"):
        load_audio(garbage)
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    with pytest.raises(DataError, match=_named(zero_bytes) + ": empty"):
        load_audio(zero_bytes)
    no_samples = tmp_path / "nosamples.wav"
    sf.write(no_samples, np.zeros(0), 16000)
    with pytest.raises(DataError, match=_named(no_samples) + r": empty audio \(0 samples\)"):
        load_audio(no_samples)
    narrow = tmp_path / "8k.wav"
    sf.write(narrow, np.zeros(800), 8000)
    with pytest.raises(DataError, match=_named(narrow) + ": sample rate 8000 Hz, expected 16000 Hz"):
        load_audio(narrow)
    with pytest.raises(DataError, match=_named(tmp_path / "absent.wav")):
        load_audio(tmp_path / "absent.wav")


def test_m4a_without_a_decoder_says_how_to_convert(tmp_path, monkeypatch):
    m4a = tmp_path / "clip.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x18ftypM4A ")
    monkeypatch.setattr(voxceleb, "m4a_decoder", lambda: "none")
    with pytest.raises(DataError, match=_named(m4a) + ".*" + re.escape("ffmpeg -i in.m4a -ar 16000 -ac 1 out.wav")
                       + ".*README"):
        load_audio(m4a)


def test_m4a_through_an_ffmpeg_binary(tmp_path, monkeypatch):
    """The ffmpeg path, with a stand-in binary: its f32le stdout becomes the waveform; a failure
    names the file and carries ffmpeg's message."""
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ffmpeg"
    fake.write_text(f"#!{sys.executable}\n"
                    "import sys, numpy as np\n"
                    "src = sys.argv[sys.argv.index('-i') + 1]\n"
                    "if 'broken' in src:\n"
                    "    sys.stderr.write('Invalid data found when processing input'); sys.exit(1)\n"
                    "assert sys.argv[sys.argv.index('-ar') + 1] == '16000'\n"
                    "sys.stdout.buffer.write(np.full(5, 0.25, np.float32).tobytes())\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(voxceleb, "m4a_decoder", lambda: "ffmpeg")
    for name in ("ok.m4a", "broken.m4a"):
        (tmp_path / name).write_bytes(b"\x00\x00\x00\x18ftypM4A ")
    assert np.array_equal(load_audio(tmp_path / "ok.m4a"), np.full(5, 0.25, np.float32))
    with pytest.raises(DataError, match=_named(tmp_path / "broken.m4a") + ": ffmpeg could not decode it: Invalid data"):
        load_audio(tmp_path / "broken.m4a")


def _speech_like(seconds: float, sr: int = 16000) -> np.ndarray:
    """A voiced-speech-like test signal: 24 harmonics of an F0 gliding around 120 Hz, 1/k amplitudes,
    amplitude-modulated at 3 Hz (syllables), peak 0.3."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 1.5 * t)) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 25)) * 0.5 * (1 + np.sin(2 * np.pi * 3 * t))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _aligned_snr_db(ref: np.ndarray, y: np.ndarray, *, max_lag: int = 2048) -> tuple[int, float]:
    """(lag, SNR in dB) of ``y`` against ``ref`` after aligning them by cross-correlation (an AAC
    encoder's priming delay, when the decoder does not trim it), over the interior (the codec's
    first and last frames excluded)."""
    n = min(len(ref), len(y))
    c = np.correlate(y[:n], ref[:n], "full")[n - 1 - max_lag: n + max_lag]
    lag = int(np.argmax(c)) - max_lag
    a, b = (ref, y[lag:]) if lag >= 0 else (ref[-lag:], y)
    m = min(len(a), len(b))
    a, b = a[2048: m - 2048], b[2048: m - 2048]
    return lag, float(10 * np.log10(np.sum(a ** 2) / np.sum((a - b) ** 2)))


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="no ffmpeg binary on PATH (tools/setup_env.sh installs Debian's ffmpeg where root)")
@pytest.mark.parametrize("rate,min_snr_db", [(16000, 25.0), (44100, 20.0)])
def test_m4a_through_the_real_ffmpeg(tmp_path, rate, min_snr_db):
    """VoxCeleb2's path: a wav encoded to AAC in .m4a by Debian's ffmpeg, decoded by load_audio.

    AAC is lossy: it primes the encoder with 1024 samples (trimmed by the decoder from the m4a's edit
    list; the comparison still aligns by cross-correlation), pads the end to whole 1024-sample frames
    and low-passes. At 128 kbit/s the interior of this speech-like signal comes back at ~37 dB SNR
    (ffmpeg 5.1, 16 kHz) and ~29 dB from a 44.1 kHz file (resampled twice); the thresholds leave
    ~10 dB for other encoder versions while a wrong rate, channel layout or sample format lands near
    or below 0 dB.
    """
    x = _speech_like(1.5)
    wav, m4a = tmp_path / "x.wav", tmp_path / "x.m4a"
    sf.write(wav, x, 16000, subtype="FLOAT")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), "-ar", str(rate), "-c:a", "aac",
                    "-b:a", "128k", str(m4a)], check=True)
    assert voxceleb.m4a_decoder() in ("torchcodec", "ffmpeg")
    y = load_audio(m4a)  # resampled to 16 kHz by the decoder
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(x) - 64 <= len(y) <= len(x) + 2048  # at most the padding of the last frames
    lag, snr = _aligned_snr_db(x, y)
    assert abs(lag) <= 1024 and snr >= min_snr_db, (lag, snr)
    # the same through a key of the manifest: the m4a utterance is found and named .wav
    root = tmp_path / "train" / "aac" / "id1" / "vid"
    root.mkdir(parents=True)
    shutil.copy(m4a, root / "00001.m4a")
    manifest = build_manifest(tmp_path / "train")
    assert manifest["key"].tolist() == ["id1/vid/00001.wav"]
    assert np.array_equal(load_audio(manifest["audio_path"][0]), y)


# ------------------------------------------------------------------------------------ frames
def test_load_frames_shape_dtype_resize(corpus, tmp_path):
    paths = build_manifest(corpus / "test")["frame_paths"][0]
    x = load_frames(paths, size=CFG.image_size)
    assert x.shape == (len(paths), CFG.image_size, CFG.image_size, 3) and x.dtype == np.uint8
    assert np.array_equal(x[0], np.asarray(Image.open(paths[0]).convert("RGB")))
    assert load_frames(paths, size=24).shape == (len(paths), 24, 24, 3)
    Image.fromarray(np.full((10, 20), 200, np.uint8), "L").save(tmp_path / "grey.jpg")
    g = load_frames([tmp_path / "grey.jpg"], size=8)
    assert g.shape == (1, 8, 8, 3) and abs(int(g.mean()) - 200) <= 2


def test_load_frames_bad_input(tmp_path):
    bad = tmp_path / "0001.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DataError, match=_named(bad) + ": unreadable face frame"):
        load_frames([bad], size=16)
    with pytest.raises(DataError, match="no face frames"):
        load_frames([], size=16)


# ------------------------------------------------------------------------------------ open_corpus
def test_open_corpus_counts_match_the_generator(corpus):
    c = open_corpus(corpus)
    counts = json.loads((corpus / "corpus.json").read_text())["counts"]
    d = describe_corpus(c)
    for split in ("train", "test"):
        for what in ("speakers", "videos", "utterances", "frames"):
            assert d[split][what] == counts[f"{split}_{what}"], (split, what)
    assert d["train"]["hours"] + d["test"]["hours"] == pytest.approx(counts["audio_seconds"] / 3600, abs=2e-3)
    assert {n: t["trials"] for n, t in d["trials"].items()} == {n: counts[f"trials_{n}"] for n in "OEH"}
    assert all(t["targets"] == t["trials"] // 2 for t in d["trials"].values())
    assert d["missing_faces"] == 0 and d["dropped_trials"] == 0 and c.missing_faces.empty
    assert c.speakers is not None and len(c.speakers) == CFG.n_train_speakers + CFG.n_test_speakers


def test_open_corpus_missing_trial_file_and_unknown_key(copy):
    (copy / "trials" / TRIAL_FILES["H"]).unlink()
    with pytest.raises(DataError, match=_named(copy / "trials" / TRIAL_FILES["H"]) + ".*not found"):
        open_corpus(copy)
    o = copy / "trials" / TRIAL_FILES["O"]
    o.write_text(o.read_text() + "1 id10001/missing/00001.wav id10001/missing/00002.wav\n")
    with pytest.raises(DataError, match=_named(o) + f":{CFG.n_trials_o + 1}: .*id10001/missing/00001.wav"):
        open_corpus(copy, trial_lists={"O": TRIAL_FILES["O"]})


def _drop_face_folder(root: Path) -> tuple[str, int]:
    """Remove the face folder of a test utterance named in the trials; (its key, O trials naming it)."""
    key = _test_utt_in_trials(root)
    shutil.rmtree(root / "test" / "faces" / key[:-4])
    o = read_trials(root / "trials" / TRIAL_FILES["O"])
    return key, int(((o["enroll"] == key) | (o["test"] == key)).sum())


def test_missing_faces_exclude_drops_warns_and_drops_trials(copy):
    key, n_o = _drop_face_folder(copy)
    with pytest.warns(UserWarning) as rec:
        c = open_corpus(copy, missing_faces="exclude")
    messages = [str(w.message) for w in rec]
    assert any(re.search(_named(copy / "test") + r": 1 of \d+ utterance\(s\) without face frames, excluded", m)
               for m in messages)
    assert any(re.search(_named(copy / "trials" / TRIAL_FILES["O"]) + f": {n_o} of {CFG.n_trials_o} trial", m)
               for m in messages)
    assert len(messages) == 1 + sum(n > 0 for n in c.dropped_trials.values())  # one per list that lost trials
    assert key not in set(c.test["key"]) and len(c.test) == len(build_manifest(copy / "test")) - 1
    assert c.missing_faces.values.tolist() == [["test", key]]
    assert c.dropped_trials["O"] == n_o >= 1 and len(c.trials["O"]) == CFG.n_trials_o - n_o
    for tr in c.trials.values():
        assert key not in set(tr["enroll"]) | set(tr["test"])
    assert describe_corpus(c)["missing_faces"] == 1


def test_missing_faces_audio_only_keeps_with_no_frames(copy):
    key, _ = _drop_face_folder(copy)
    with pytest.warns(UserWarning, match="kept audio-only"):
        c = open_corpus(copy, missing_faces="audio_only")
    row = c.test.set_index("key").loc[key]
    assert row["n_frames"] == 0 and list(row["frame_paths"]) == []
    assert c.missing_faces.values.tolist() == [["test", key]] and len(c.trials["O"]) == CFG.n_trials_o


def test_missing_faces_error_names_the_folder(copy):
    key, _ = _drop_face_folder(copy)
    with pytest.raises(DataError, match=_named(copy / "test" / "faces" / key[:-4]) + ": no face frames"):
        open_corpus(copy, missing_faces="error")


# ------------------------------------------------------------------------------------ scan_corpus
def test_scan_clean_corpus_has_no_faults(corpus):
    scan = scan_corpus(corpus)
    assert scan["faults"] == []
    d = describe_corpus(open_corpus(corpus))
    for split in ("train", "test"):
        assert {k: v for k, v in scan["counts"][split].items() if k != "m4a"} == d[split]
    assert scan["counts"]["trials"]["O"] == {"trials": CFG.n_trials_o, "targets": CFG.n_trials_o // 2,
                                             "malformed": 0, "not_found": 0}


def test_scan_reports_every_fault_by_name_without_raising(copy):
    wavs = sorted((copy / "test" / "wav").rglob("*.wav"))
    no_face, _ = _drop_face_folder(copy)
    damaged = [w for w in wavs if str(w.relative_to(copy / "test" / "wav")) != no_face][:3]
    damaged[0].write_bytes(np.random.default_rng(1).bytes(2000))  # corrupt
    damaged[1].write_bytes(b"")  # zero-length
    sf.write(damaged[2], np.zeros(4000), 8000)  # wrong sample rate
    o, e, h = (copy / "trials" / TRIAL_FILES[n] for n in "OEH")
    o.write_text(o.read_text() + "2 a/b/1.wav a/b/2.wav\nonly_two fields\n")
    e.write_text(e.read_text() + "1 id10001/nowhere/00001.wav id10001/nowhere/00002.wav\n")
    h.unlink()
    shutil.rmtree(copy / "train")

    scan = scan_corpus(copy)  # must not raise
    faults = scan["faults"]
    text = "\n".join(faults)

    def one(pattern: str) -> str:
        hits = [f for f in faults if re.search(pattern, f)]
        assert len(hits) == 1, (pattern, faults)
        return hits[0]

    one(_named(copy / "train") + ": missing split folder")
    assert re.search(_named(copy / "test" / "faces" / no_face[:-4]), one(r"1 utterance\(s\) without face frames"))
    assert str(damaged[0]) in one(r"1 unreadable audio")
    assert str(damaged[1]) in one(r"1 empty file")
    assert f"{damaged[2]} (8000 Hz)" in one(r"1 audio file\(s\) not at 16000 Hz")
    n_o = CFG.n_trials_o
    hit = one(_named(o) + r": 2 malformed trial line\(s\)")
    assert f"line {n_o + 1} '2 a/b/1.wav a/b/2.wav'" in hit and f"line {n_o + 2} 'only_two fields'" in hit
    unknown = one(_named(e) + r": 1 trial\(s\) name utterances not in")
    assert f"line {CFG.n_trials_e + 1} id10001/nowhere/00001.wav" in unknown
    one(_named(h) + ": trial list 'H' not found")
    assert len(faults) == 8, text
    counts = scan["counts"]
    assert counts["train"]["utterances"] == 0 and counts["test"]["utterances"] == len(wavs)
    assert counts["missing_faces"] == 1 and counts["trials"]["O"]["malformed"] == 2
    assert counts["trials"]["E"]["not_found"] == 1 and "H" not in counts["trials"]


def test_scan_counts_m4a_without_decoding(tmp_path, monkeypatch):
    d = tmp_path / "test" / "aac" / "id10001" / "vid"
    d.mkdir(parents=True)
    (d / "00001.m4a").write_bytes(b"not decodable")
    real_info = sf.info

    def info(path, *a, **k):
        assert not str(path).endswith(".m4a"), "scan must not open .m4a"
        return real_info(path, *a, **k)

    monkeypatch.setattr(sf, "info", info)
    monkeypatch.setattr(voxceleb, "_decode_m4a", lambda *a, **k: pytest.fail("scan must not decode"))
    scan = scan_corpus(tmp_path, trial_lists={})
    assert scan["counts"]["test"]["m4a"] == scan["counts"]["test"]["utterances"] == 1
    assert any("missing split folder" in f for f in scan["faults"])
    assert any("without face frames" in f for f in scan["faults"])
    assert not any("unreadable" in f for f in scan["faults"])
