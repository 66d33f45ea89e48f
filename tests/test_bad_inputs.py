"""Every bad input named: each row of the table "Bad input and the error it gets" (docs/robustness.md,
linked from the README) is a case
here. Each case makes the bad input, feeds it to the reader (or the command) that meets it first,
checks the error names the file, line or key, and checks that nothing was left half-written.

That table is checked against :data:`CASES` (same names, same order), so the two cannot drift.
"""
from __future__ import annotations

import io
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from cometa.cli import main
from cometa.config import ConfigError, load_config
from cometa.data.voxceleb import DataError, check_trials, load_audio, load_frames, read_trials
from cometa.pipeline.run import resolve_config
from cometa.runs import LOCK_FILE, RunFormatError, RunStore

ROOT = Path(__file__).resolve().parent.parent
GOOD_TRIALS = "1 a/v1/1.wav a/v2/1.wav\n0 a/v1/1.wav b/v1/1.wav\n"


def _audio(name: str, write: Callable[[Path], None]) -> Callable[[Path], str]:
    def case(tmp: Path) -> str:
        path = tmp / name
        write(path)
        load_audio(path)
        return str(path)
    return case


def _trials(text: str) -> Callable[[Path], str]:
    def case(tmp: Path) -> str:
        path = tmp / "veri_test2.txt"
        path.write_text(text)
        read_trials(path)
        return str(path)
    return case


def _truncated_jpg(tmp: Path) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path = tmp / "0001.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # a copy cut off half way
    load_frames([path], size=32)
    return str(path)


def _unknown_utterance(tmp: Path) -> str:
    path = tmp / "veri_test2.txt"
    path.write_text(GOOD_TRIALS + "1 a/v1/1.wav zz/v9/9.wav\n")
    check_trials(read_trials(path), ["a/v1/1.wav", "a/v2/1.wav", "b/v1/1.wav"], path=path)
    return str(path)


def _embeddings(write: Callable[[RunStore], None]) -> Callable[[Path], str]:
    def case(tmp: Path) -> str:
        store = RunStore(tmp / "run", create=True)
        write(store)
        store.load_arrays("stage1/embeddings.npz", finite=True)  # as a round reads Stage I's embeddings
        return str(store.path("stage1/embeddings.npz"))
    return case


def _nan_embeddings(store: RunStore) -> None:
    audio = np.ones((5, 4), np.float32)
    audio[3, 1] = np.nan
    store.save_array("stage1/embeddings.npz", keys=np.array(list("abcde")), audio=audio)


def _unknown_strategy(tmp: Path) -> str:
    resolve_config("tiny", strategies=["cometa", "lgll"])  # what `cometa run --strategies cometa,lgll` does first
    return ""


def _out_of_range(tmp: Path) -> str:
    load_config("tiny", overrides=["stage2.tau=1.5"])  # `cometa run --set stage2.tau=1.5`
    return ""


def _unknown_preset(tmp: Path) -> str:
    load_config("huge")
    return ""


def _config_file(text: str) -> Callable[[Path], str]:
    def case(tmp: Path) -> str:
        path = tmp / "study.yaml"
        path.write_text(text)
        load_config("tiny", path=path)
        return str(path)
    return case


def _other_format(tmp: Path) -> str:
    run_dir = tmp / "run"
    RunStore(run_dir, create=True)
    con = sqlite3.connect(run_dir / "store.sqlite")
    con.execute("PRAGMA user_version = 7")
    con.close()
    assert main(["run", "--preset", "tiny", "--run-dir", str(run_dir), "--quiet"]) == 3
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([LOCK_FILE, "store.sqlite"])  # no config.yaml
    RunStore(run_dir)
    return str(run_dir / "store.sqlite")


def _corrupt_wav(path: Path) -> None:
    path.write_bytes(b"RIFF" + np.random.default_rng(0).bytes(3000))


# (name in the docs table, what makes and reads it, error class, the message it must carry: {path}
# stands for the file named by the case)
CASES: list[tuple[str, Callable[[Path], str], type[Exception], str]] = [
    ("corrupt wav", _audio("x.wav", _corrupt_wav), DataError, "{path}: unreadable audio"),
    ("empty wav (0 bytes)", _audio("x.wav", lambda p: p.write_bytes(b"")), DataError,
     "{path}: empty audio file (0 bytes)"),
    ("8 kHz wav", _audio("x.wav", lambda p: sf.write(p, np.zeros(800), 8000)), DataError,
     "{path}: sample rate 8000 Hz, expected 16000 Hz (resample it: ffmpeg -i in.wav -ar 16000 -ac 1 out.wav)"),
    ("stereo wav", _audio("x.wav", lambda p: sf.write(p, np.zeros((800, 2)), 16000)), DataError,
     "{path}: 2 channels, expected mono (mix it down: ffmpeg -i in.wav -ar 16000 -ac 1 out.wav)"),
    ("m4a that ffmpeg cannot decode", _audio("x.m4a", lambda p: p.write_bytes(b"\x00\x00\x00\x18ftypM4A junk")),
     DataError, "{path}: ffmpeg could not decode it: "),
    ("truncated jpg", _truncated_jpg, DataError, "{path}: unreadable face frame (image file is truncated"),
    ("empty trial list", _trials("\n\n"), DataError, "{path}: no trials in the list"),
    ("trial line with two fields", _trials(GOOD_TRIALS + "1 a/v1/1.wav\n"), DataError,
     "{path}:3: malformed trial line '1 a/v1/1.wav' (expected 'label enroll test' with label 0 or 1"),
    ("trial label other than 0/1", _trials(GOOD_TRIALS + "2 a/v1/1.wav b/v1/1.wav\n"), DataError,
     "{path}:3: malformed trial line '2 a/v1/1.wav b/v1/1.wav'"),
    ("duplicate key (an utterance against itself)", _trials(GOOD_TRIALS + "1 b/v1/1.wav b/v1/1.wav\n"), DataError,
     "{path}:3: trial pairs b/v1/1.wav with itself (duplicate key)"),
    ("duplicate pair with both labels", _trials(GOOD_TRIALS + "\n1 b/v1/1.wav a/v1/1.wav\n"), DataError,
     "{path}:4: trial a/v1/1.wav b/v1/1.wav is labelled 1 here and 0 on line 2"),
    ("trial naming an utterance not in the corpus", _unknown_utterance, DataError,
     "{path}:3: trial names 'zz/v9/9.wav', which is not in the test manifest (1 of 3 trial(s)"),
    ("NaN in an embeddings file", _embeddings(_nan_embeddings), ValueError,
     "{path}: array 'audio' holds 1 NaN or infinite value(s), the first in row 3; delete the file and rerun"),
    ("embeddings file that is not an npz",
     _embeddings(lambda s: s.path("stage1").mkdir() or s.path("stage1/embeddings.npz").write_bytes(b"junk")),
     ValueError, "{path}: not a readable .npz array file"),
    ("unknown strategy (--strategies)", _unknown_strategy, ConfigError,
     "--strategies: unknown strategy 'lgll'; choose from baseline, coteaching_plus, cometa"),
    ("unknown strategy (in the config)", _config_file("stage2: {strategies: [baseline, cometta]}\n"), ConfigError,
     "{path}: 'stage2': strategies: unknown strategy 'cometta'; choose from baseline, coteaching_plus, cometa"),
    ("unknown preset", _unknown_preset, ConfigError, "unknown preset 'huge' (choose from tiny, demo, paper)"),
    ("out-of-range config value", _out_of_range, ConfigError, "--set: 'stage2.tau' must be in [0, 1), got 1.5"),
    ("out-of-range value in a config file", _config_file("clustering: {k: 0}\n"), ConfigError,
     "{path}: 'clustering.k' must be"),
    ("unknown config key", _config_file("stage2: {tua: 0.3}\n"), ConfigError,
     "{path}: unknown config key 'stage2.tua' (did you mean 'tau'?)"),
    ("run directory of another run format", _other_format, RunFormatError,
     "{path}: written by run format 7, this cometa reads format 1. Start a new run directory (--run-dir)"),
]


@pytest.mark.parametrize("name,make,error,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_an_error_naming_it(name, make, error, message, tmp_path):
    with pytest.raises(error) as e:
        make(tmp_path)
    names = sorted(str(p) for p in tmp_path.rglob("*"))
    want = message.format(path=_made_path(tmp_path, name))
    assert want in str(e.value), f"{name}: {e.value}"
    # nothing half-written: no temporary file of an atomic write is left anywhere
    assert not [n for n in names if ".tmp-" in n or ".partial-" in n], names


def _made_path(tmp: Path, name: str) -> str:
    """The file a case wrote (the one its error must name)."""
    files = [p for p in tmp.rglob("*") if p.is_file() and p.name != LOCK_FILE]
    if name == "run directory of another run format":
        return str(tmp / "run" / "store.sqlite")
    if name.startswith("NaN") or name.startswith("embeddings"):
        return str(tmp / "run" / "stage1" / "embeddings.npz")
    return str(files[0]) if len(files) == 1 else ""


def _paper_file(tmp: Path) -> list[str]:
    (tmp / "study.yaml").write_text("preset: paper\n")
    return ["run", "--preset", "tiny", "--config", str(tmp / "study.yaml"), "--run-dir", str(tmp / "r"), "--dry-run"]


# Mistakes on the command line: (name in the README table, the arguments (given the test's directory),
# the message, {tmp} standing for that directory). Each exits with status 2 and one line on stderr,
# and writes nothing.
CLI_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("--preset and the --config file's preset: differ", _paper_file,
     "--preset tiny and {tmp}/study.yaml's 'preset: paper' differ"),
    ("negative --rounds", lambda t: ["run", "--preset", "tiny", "--rounds", "-2", "--dry-run", "--run-dir", f"{t}/r"],
     "--rounds: 'stage2.rounds' must be >= 1, got -2"),
    ("--jobs 0", lambda t: ["run", "--preset", "tiny", "--jobs", "0", "--run-dir", f"{t}/r"],
     "--jobs: 'jobs' must be >= 1, got 0"),
    ("negative seed (--seeds)", lambda t: ["run", "--preset", "tiny", "--seeds", "-1", "--run-dir", f"{t}/r"],
     "--seeds: 'seed' must be >= 0, got -1"),
    ("report of a directory that is not a run", lambda t: ["report", f"{t}/nope"],
     "{tmp}/nope: no store.sqlite (is this a run directory?)"),
    ("paper preset without --data-root", lambda t: ["run", "--preset", "paper", "--dry-run", "--run-dir", f"{t}/r"],
     "preset paper: 'corpus.root' is not set; give the VoxCeleb directory with --data-root DIR"),
    ("--from a directory that is not a run", lambda t: ["run", "--preset", "tiny", "--from", f"{t}/nope",
                                                         "--run-dir", f"{t}/r", "--quiet"],
     "--from {tmp}/nope: not a run directory"),
    ("--from a directory that is not a run (--seeds)", lambda t: ["run", "--preset", "tiny", "--seeds", "0,1",
                                                                  "--from", f"{t}/nope", "--run-dir", f"{t}/r"],
     "--from {tmp}/nope: not a run directory"),
    ("--from a directory that is not a run (--dry-run)", lambda t: ["run", "--preset", "tiny", "--dry-run",
                                                                    "--from", f"{t}/nope", "--run-dir", f"{t}/r"],
     "--from {tmp}/nope: not a run directory"),
    ("--steps naming no step", lambda t: ["run", "--preset", "tiny", "--steps", "stage3", "--run-dir", f"{t}/r"],
     "--steps 'stage3' matches no step; the steps are: corpus, stage1, "),
]


@pytest.mark.parametrize("name,argv,message", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_command_line_mistakes_get_one_line_and_exit_2(name, argv, message, tmp_path, capsys):
    args = argv(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert main(args) == 2, name
    err = capsys.readouterr().err
    assert err.startswith("cometa: ") and err.count("\n") == 1, err  # one line, no traceback
    assert message.format(tmp=tmp_path.resolve()) in err.replace(str(tmp_path), str(tmp_path.resolve()))
    assert sorted(tmp_path.rglob("*")) == before  # nothing written: no run directory, no lock file


def test_cli_errors_are_printed_naming_the_key_and_write_nothing(tmp_path, capsys):
    for args, want in [(["--strategies", "cometa,lgll"], "--strategies: unknown strategy 'lgll'; choose from "),
                       (["--set", "stage2.tau=1.5"], "--set: 'stage2.tau' must be in [0, 1), got 1.5")]:
        assert main(["run", "--preset", "tiny", "--run-dir", str(tmp_path / "r"), "--quiet", *args]) == 2
        assert want in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # the command line knows the presets: argparse refuses
        main(["run", "--preset", "huge", "--run-dir", str(tmp_path / "r")])
    assert e.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_pair_repeated_with_the_same_label_is_read(tmp_path):
    """Lists drawn with replacement (the embedded corpus's) repeat pairs: not an error."""
    path = tmp_path / "veri_test2.txt"
    path.write_text(GOOD_TRIALS + "1 a/v2/1.wav a/v1/1.wav\n")
    assert read_trials(path)["label"].tolist() == [1, 0, 1]


def test_docs_table_lists_every_case_in_order():
    text = (ROOT / "docs" / "robustness.md").read_text()
    section = text.split("## Bad input and the error it gets", 1)[1].split("\n#", 1)[0]
    # every row but the separator (a case may start with '--', as an option does)
    rows = [line.split("|")[1].strip() for line in section.splitlines() if re.match(r"\| (?!--- \|)", line)][1:]
    assert rows == [c[0] for c in CASES] + [c[0] for c in CLI_CASES]
