"""``cometa prepare voxceleb``: a VoxCeleb-shaped download tree made with Debian's ffmpeg from the
embedded corpus (real m4a and mp4 files, one corrupt m4a), converted, resumed, and then checked by
``run --preset paper --dry-run --data-root`` on the result and run end to end at the ``tiny`` sizes."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from cometa.cli import main
from cometa.data.prepare import ERRORS, TRIAL_NAMES, voxceleb_tasks
from cometa.data.synthetic import SyntheticConfig, build_corpus

CFG = SyntheticConfig(seed=7, n_train_speakers=2, n_test_speakers=3, videos_per_speaker=2, utterances_per_video=2,
                      min_seconds=1.0, max_seconds=2.5, image_size=32, n_trials_o=12, n_trials_e=16, n_trials_h=8)
FFMPEG = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]


def _utterances(split_root: Path):
    """(relative <id>/<video>/<utt>, wav path, face folder) of a split of the embedded corpus."""
    for wav in sorted((split_root / "wav").rglob("*.wav")):
        rel = wav.relative_to(split_root / "wav").with_suffix("")
        yield rel, wav, split_root / "faces" / rel


def _download_tree(corpus: Path, src: Path) -> dict[str, int]:
    """VoxCeleb as downloaded: vox2/dev/aac/*.m4a + vox2/dev/mp4/*.mp4 (train), vox1/wav/*.wav +
    vox1/mp4/*.mp4 (test), the trial lists at the top; the face frames of an utterance become a
    1-fps H.264 video. Returns the frame count per utterance (relative path)."""
    frames = {}
    for split, corpus_dir, audio in (("train", "vox2/dev", "aac"), ("test", "vox1", "wav")):
        for rel, wav, faces in _utterances(corpus / split):
            a = src / corpus_dir / audio / rel
            a.parent.mkdir(parents=True, exist_ok=True)
            if audio == "aac":  # 44.1 kHz AAC in an m4a, as VoxCeleb2 ships it
                subprocess.run([*FFMPEG, "-i", str(wav), "-ar", "44100", "-c:a", "aac", "-b:a", "64k",
                                str(a.with_suffix(".m4a"))], check=True)
            else:
                shutil.copyfile(wav, a.with_suffix(".wav"))
            v = src / corpus_dir / "mp4" / rel
            v.parent.mkdir(parents=True, exist_ok=True)
            jpgs = sorted(faces.glob("*.jpg"))
            subprocess.run([*FFMPEG, "-framerate", "1", "-pattern_type", "glob", "-i", str(faces / "*.jpg"),
                            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-r", "1", str(v.with_suffix(".mp4"))],
                           check=True)
            frames[f"{split}/{rel}"] = len(jpgs)
    for name in TRIAL_NAMES:
        shutil.copyfile(corpus / "trials" / name, src / name)
    return frames


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, Path, dict[str, int]]:
    if shutil.which("ffmpeg") is None:  # Debian's ffmpeg is part of the project's environment (README)
        pytest.fail("ffmpeg is not on the PATH: apt-get install ffmpeg")
    base = tmp_path_factory.mktemp("prepare")
    corpus = build_corpus(CFG, base / "corpus", progress=False, workers=1)
    src = base / "src"
    frames = _download_tree(corpus, src)
    bad = src / "vox2" / "dev" / "aac" / "id99999" / "broken" / "00001.m4a"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(range(256)) * 4)  # an m4a header, then garbage
    return corpus, src, frames


def test_prepare_converts_resumes_and_lists_the_corrupt_file(tree, tmp_path, capsys):
    corpus, src, frames = tree
    dst = tmp_path / "data"
    n_tasks = len(voxceleb_tasks(src, dst))
    assert n_tasks == 2 * len(frames) + 1 + 3  # audio + faces per utterance, the corrupt m4a, 3 trial lists

    assert main(["prepare", "voxceleb", str(src), str(dst), "--dry-run", "--quiet"]) == 0
    assert f"{n_tasks} to make" in capsys.readouterr().out and not dst.exists()

    assert main(["prepare", "voxceleb", str(src), str(dst), "--jobs", "2", "--quiet"]) == 1  # one file failed
    out = capsys.readouterr().out
    assert f"{n_tasks - 1} made" in out and "1 failed" in out and ERRORS in out
    errors = (dst / ERRORS).read_text().splitlines()
    assert errors[0] == "kind\tsource\terror" and len(errors) == 2
    assert errors[1].startswith("audio\t") and "id99999/broken/00001.m4a" in errors[1] and "ffmpeg" in errors[1]
    assert not [p for p in (dst / "train" / "wav").rglob("*") if p.is_file() and "id99999" in str(p)]
    assert not list(dst.rglob(".*.part-*"))  # nothing half-written left behind

    for key, n_frames in frames.items():
        split, rel = key.split("/", 1)
        wav, sr = sf.read(dst / split / "wav" / f"{rel}.wav")
        ref, ref_sr = sf.read(corpus / split / "wav" / f"{rel}.wav")
        assert sr == 16000 and wav.ndim == 1
        assert abs(len(wav) - len(ref) * 16000 / ref_sr) < 0.05 * 16000  # the same duration (AAC pads a little)
        jpgs = sorted((dst / split / "faces" / rel).glob("*.jpg"))
        assert abs(len(jpgs) - n_frames) <= 1  # one frame per second of a 1-fps video
        assert Image.open(jpgs[0]).size == (32, 32)
    test_rel = next(k for k in frames if k.startswith("test/")).split("/", 1)[1]
    np.testing.assert_array_equal(sf.read(dst / "test" / "wav" / f"{test_rel}.wav")[0],
                                  sf.read(corpus / "test" / "wav" / f"{test_rel}.wav")[0])  # wav at 16 kHz: as is
    for name in TRIAL_NAMES:
        assert (dst / "trials" / name).read_bytes() == (corpus / "trials" / name).read_bytes()

    # resumable: a second run makes only what failed (and fails on it again); a killed run's leftovers go
    (dst / "train" / "wav" / ".x.wav.part-1").write_bytes(b"half")
    one = next(iter(frames)).split("/", 1)
    (dst / one[0] / "wav" / f"{one[1]}.wav").unlink()
    assert main(["prepare", "voxceleb", str(src), str(dst), "--jobs", "1", "--quiet"]) == 1
    assert f"1 made, {n_tasks - 2} already made, 1 failed" in capsys.readouterr().out
    assert not list(dst.rglob(".*.part-*"))

    # the prepared tree is what the paper preset reads
    rc = main(["run", "--preset", "paper", "--dry-run", "--data-root", str(dst), "--quiet"])
    out = capsys.readouterr().out
    assert "nothing was trained" in out and "train.utterances" in out
    assert rc == 0, out
    # the GPU plan: each paper strategy with its FLOPs per step, and the loader measured on the prepared files
    assert "GPU plan, one GPU" in out and all(f"   {s} " in out for s in ("baseline", "coteaching_plus", "cometa"))
    workers = [line for line in out.splitlines() if "loader workers per GPU:" in line]
    assert len(workers) == 1 and int(workers[0].split(":")[1].split()[0]) >= 1


def test_prepare_names_a_missing_folder(tmp_path, capsys):
    (tmp_path / "src" / "vox2" / "aac").mkdir(parents=True)
    assert main(["prepare", "voxceleb", str(tmp_path / "src"), str(tmp_path / "dst"), "--quiet"]) == 2
    assert "vox1" in capsys.readouterr().err and not (tmp_path / "dst").exists()


@pytest.fixture(scope="module")
def prepared(tree, tmp_path_factory) -> Path:
    """The download tree prepared once (the corrupt m4a fails, the rest is made)."""
    dst = tmp_path_factory.mktemp("prepared") / "data"
    assert main(["prepare", "voxceleb", str(tree[1]), str(dst), "--jobs", "2", "--quiet"]) == 1
    return dst


def _embed_from_files(audio_model, visual_model, wav: Path, faces: Path) -> tuple[np.ndarray, np.ndarray]:
    """(audio (D,), visual (D,)) of one utterance straight from its prepared files, as the run's embedding
    step defines them: the audio encoder on the whole 16 kHz wav trimmed (centre) to a multiple of 0.5 s,
    and the mean of the face encoder's embeddings of every jpg in the utterance's face folder."""
    import torch

    wave, sr = sf.read(wav, dtype="float32")
    assert sr == 16000 and wave.ndim == 1, wav
    n = max(8000, len(wave) // 8000 * 8000)
    off = (len(wave) - n) // 2
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(faces.glob("*.jpg"))])  # (F, S, S, 3)
    with torch.inference_mode():
        audio = audio_model(torch.from_numpy(wave[off:off + n])[None])[0].numpy()
        visual = visual_model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255).numpy()  # (F, D)
    return audio, visual


def test_tiny_run_end_to_end_on_the_prepared_tree(tree, prepared, tmp_path, capsys):
    from cometa.config import load_run_config
    from cometa.models.build import build_audio_model, build_visual_model
    from cometa.pipeline.plan import plan_steps
    from cometa.runs import RunStore, done_hash
    from cometa.train.checkpoint import load_checkpoint

    _, _, frames = tree
    run_dir = tmp_path / "run"
    # the tiny preset's sizes on the prepared files, one strategy (Co-Meta: both encoders, round 2 clusters on
    # the faces too); off what does not read the files (projections, the analyses, the report's static
    # figures); k = the tree's 2 training speakers (tiny's 24 would need 24 training utterances)
    settings = ["corpus.kind=voxceleb", "clustering.k=2", "projection.enabled=false",
                "evaluation.as_norm.enabled=false", "evaluation.label_issues.enabled=false", "report.static=false"]
    rc = main(["run", "--preset", "tiny", "--strategies", "cometa", "--data-root", str(prepared), "--run-dir",
               str(run_dir), "--quiet", *[a for s in settings for a in ("--set", s)]])
    out = capsys.readouterr().out
    assert rc == 0, out

    # every step finished, with the inputs it was planned with
    cfg = load_run_config(run_dir / "config.yaml")
    assert cfg.corpus.kind == "voxceleb" and Path(cfg.corpus.root) == prepared and cfg.clustering.k == 2
    steps = plan_steps(cfg, run_dir)
    assert [s.name for s in steps] == ["corpus", "stage1", "cometa/round_1", "cometa/round_2", "report"]
    assert all(done_hash(s.out_dir) == s.inputs_hash for s in steps)
    assert main(["ls", str(run_dir)]) == 0
    assert "steps 5/5  complete" in capsys.readouterr().out

    # the run's manifests are the prepared utterances: each one, and the corrupt m4a's not
    keys = {split: sorted(f"{k.split('/', 1)[1]}.wav" for k in frames if k.startswith(f"{split}/"))
            for split in ("train", "test")}
    store = RunStore(run_dir)
    stage1, stage1_test = store.load_arrays("stage1/embeddings.npz"), store.load_arrays("stage1/test_embeddings.npz")
    assert stage1["keys"].tolist() == keys["train"] and stage1_test["keys"].tolist() == keys["test"]
    assert store.load_table("cometa/round_2/labels.parquet")["key"].tolist() == keys["train"]
    assert not any("id99999" in k for k in keys["train"])
    counts = json.loads((run_dir / "corpus" / "counts.json").read_text())
    assert Path(counts["root"]) == prepared and counts["missing_faces"] == 0
    for split in ("train", "test"):
        jpgs = list((prepared / split / "faces").rglob("*.jpg"))
        assert counts[split]["utterances"] == len(keys[split]) and counts[split]["frames"] == len(jpgs)

    # EER of each trial list: Stage I's audio, and every round's audio, visual and fused
    eer = store.scalars(name="eer")
    expected = {(None, 0, "audio")} | {("cometa", r, m) for r in (1, 2) for m in ("audio", "visual", "fused")}
    for name in ("O", "E", "H"):
        rows = eer[eer["stage"] == f"eval/{name}"]
        assert set(zip(rows["strategy"], rows["round"], rows["modality"])) == expected, name
        assert rows["value"].between(0, 1).all(), rows

    # what the run embedded is what the prepared files give: the 16 kHz wavs (44.1 kHz AAC before) and exactly
    # the jpgs extracted for each utterance (the mean over one frame fewer is another embedding)
    def encoder(build, path: str, part: str):
        model = build(cfg).eval()
        model.load_state_dict(load_checkpoint(run_dir / path)[part])
        return model

    audio1 = encoder(lambda c: build_audio_model(c, adapters=False), "stage1/model.pt", "audio")
    audio2 = encoder(build_audio_model, "cometa/round_2/checkpoint.pt", "audio")
    visual1 = encoder(build_visual_model, "cometa/round_1/checkpoint.pt", "visual")
    visual2 = encoder(build_visual_model, "cometa/round_2/checkpoint.pt", "visual")
    train2 = store.load_arrays("cometa/round_2/embeddings.npz")
    test2 = store.load_arrays("cometa/round_2/test_embeddings.npz")
    for split, audio_model, visual_model, audio_run, visual_run in (
            ("train", audio1, visual1, stage1["audio"], train2["visual"]),  # round 2 clusters on round 1's encoders
            ("test", audio2, visual2, test2["audio"], test2["visual"])):
        for i, key in enumerate(keys[split]):
            rel = key[:-len(".wav")]
            audio, per_frame = _embed_from_files(audio_model, visual_model, prepared / split / "wav" / key,
                                                 prepared / split / "faces" / rel)
            assert abs(len(per_frame) - frames[f"{split}/{rel}"]) <= 1
            np.testing.assert_allclose(audio_run[i], audio, rtol=1e-4, atol=1e-5, err_msg=key)
            np.testing.assert_allclose(visual_run[i], per_frame.mean(0), rtol=1e-4, atol=1e-5, err_msg=key)
            if len(per_frame) > 1:
                assert not np.allclose(visual_run[i], per_frame[:-1].mean(0), rtol=1e-4, atol=1e-5)


def test_prepare_takes_voxceleb1_dev_and_test_both(tmp_path):
    # VoxCeleb1 ships as a dev and a test archive: the O list names test speakers, E and H dev ones too
    src = tmp_path / "src"
    files = ["vox2/dev/aac/id00012/abc/00001.m4a", "vox2/test/aac/id09999/xyz/00001.m4a",  # vox2 test: not trained on
             "vox1/dev/wav/id10001/v1/00001.wav", "vox1/dev/mp4/id10001/v1/00001.mp4",
             "vox1/test/wav/id10270/v2/00001.wav", "vox1/test/mp4/id10270/v2/00001.mp4", *TRIAL_NAMES]
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_bytes(b"x")
    made = {(t.kind, str(t.target.relative_to(tmp_path / "dst"))) for t in voxceleb_tasks(src, tmp_path / "dst")}
    assert made == {("audio", "train/wav/id00012/abc/00001.wav"),
                    ("audio", "test/wav/id10001/v1/00001.wav"), ("faces", "test/faces/id10001/v1/00001"),
                    ("audio", "test/wav/id10270/v2/00001.wav"), ("faces", "test/faces/id10270/v2/00001"),
                    *(("trials", f"trials/{name}") for name in TRIAL_NAMES)}
