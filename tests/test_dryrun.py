"""``cometa run --dry-run``: the data check and the plan, on a clean corpus and a faulty one."""
import io
import shutil

from cometa.cli import main
from cometa.config import load_config
from cometa.data.synthetic import build_corpus
from cometa.pipeline.dryrun import dry_run


def _tiny_root():
    return build_corpus(load_config("tiny").corpus.synthetic, progress=False)


def test_dry_run_on_the_embedded_corpus(capsys):
    rc = main(["run", "--preset", "tiny", "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "train.utterances" in out and " 96" in out  # the tiny corpus: 24 speakers x 2 x 2
    # corpus, Stage I, 3 strategies x 2 rounds, projections, analysis of Stage I and of each strategy, report
    assert "plan: 14 steps" in out and "nothing was trained" in out
    assert "faults" not in out


def test_dry_run_reports_each_fault_by_name(tmp_path):
    root = tmp_path / "vox"
    shutil.copytree(_tiny_root(), root)
    # 1. a missing face folder
    face = sorted((root / "test" / "faces").glob("*/*/*"))[0]
    shutil.rmtree(face)
    # 2. a trial naming an utterance that does not exist, 3. a malformed trial line
    o = root / "trials" / "veri_test2.txt"
    o.write_text(o.read_text() + "1 id99999/nope/00001.wav id10001/x/00001.wav\nthis line is wrong\n")
    # 4. a missing trial list
    (root / "trials" / "list_test_hard2.txt").unlink()
    # 5. a corrupt wav
    wav = sorted((root / "train" / "wav").rglob("*.wav"))[0]
    wav.write_bytes(b"not a wav at all" * 10)
    buf = io.StringIO()
    rc = dry_run("tiny", overrides=[f"corpus.root={root}", "corpus.kind=voxceleb"], file=buf)
    out = buf.getvalue()
    assert rc == 1
    assert str(face.relative_to(root / "test" / "faces")).split("/")[0] in out and "without face frames" in out
    assert "veri_test2.txt" in out and ("line" in out)
    assert "list_test_hard2.txt" in out and "not found" in out
    assert wav.name in out and "unreadable" in out
    assert "nothing was trained" in out


def test_dry_run_plans_what_the_run_would_with_its_shorthands():
    """--strategies and --rounds reach the dry run's plan (they were ignored: the plan showed the preset's)."""
    buf = io.StringIO()
    assert dry_run("tiny", strategies=["lgl", "baseline"], rounds=1, file=buf) == 0
    out = buf.getvalue()
    assert "stage II: strategies lgl, baseline; 1 rounds" in out
    assert "cometa " not in out.split("estimated compute")[1]  # no Co-Meta line in the compute estimate


def test_labels_of_known_noise_are_named_where_they_read_the_ground_truth():
    """clustering.method: truth reads the true identities: the dry run says so, and how the noise was
    made; the report's note (its title and Table 6's variant) names the rate, unit and target."""
    from cometa.results.ablation import truth_label_note

    buf = io.StringIO()
    overrides = ["clustering.method=truth", "clustering.truth_noise=0.35", "clustering.truth_noise_unit=video",
                 "clustering.truth_noise_target=audio_nearest"]
    assert dry_run("tiny", overrides=overrides, file=buf) == 0
    assert ("labels: the TRUE identities, 35% moved by video (those Stage I's audio encoder confuses most, to the "
            "identity each sounds nearest)") in buf.getvalue()
    cfg = load_config("tiny", overrides=["clustering.method=truth", "clustering.truth_noise=0.35",
                                         "clustering.truth_noise_unit=video"]).to_dict()
    assert truth_label_note(cfg) == "true labels, 35 % moved by video"
    cfg["clustering"]["truth_noise_target"] = "audio_nearest"
    assert truth_label_note(cfg) == "true labels, 35 % moved by video to the nearest voice"
    assert truth_label_note(load_config("tiny").to_dict()) == ""
