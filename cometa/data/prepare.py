"""``cometa prepare voxceleb SRC DST``: the VoxCeleb downloads turned into the layout cometa reads.

Reads (as distributed; ``dev/`` levels optional)::

    SRC/vox2/[dev/]aac/<id>/<video>/<utt>.m4a    VoxCeleb2 dev audio          -> DST/train/wav/.../<utt>.wav
    SRC/vox2/[dev/]mp4/<id>/<video>/<utt>.mp4    VoxCeleb2 dev video          -> DST/train/faces/.../<utt>/*.jpg
    SRC/vox1/[dev/|test/]wav/<id>/<video>/<utt>.wav (or .m4a)  VoxCeleb1 audio -> DST/test/wav/.../<utt>.wav
    SRC/vox1/[dev/|test/]mp4/<id>/<video>/<utt>.mp4  VoxCeleb1 video (optional) -> DST/test/faces/.../<utt>/*.jpg
    SRC/veri_test2.txt, list_test_all2.txt, list_test_hard2.txt (or under SRC/vox1/) -> DST/trials/

VoxCeleb1's dev and test parts are both read (the E and H lists name dev speakers); of VoxCeleb2 only the
first of ``aac/``, ``dev/aac/``, ``test/aac/`` (its dev set is the training set).

Audio becomes 16 kHz mono 16-bit wav; a video gives one face frame per second (``ffmpeg -vf fps=1``,
JPEG), the frames of the face tracks VoxCeleb's mp4 files already are. Each file is one task, run by
``jobs`` worker processes each driving one ffmpeg at a time.

- Resumable: a task whose output exists is skipped; every output is written under a temporary name
  (``.<name>.part-<pid>`` beside it: a file the readers never match) and renamed when complete, so a
  killed run leaves nothing half-written under a final name; its leftovers are removed on the next run.
- Honest: a file ffmpeg cannot convert is listed in ``DST/prepare_errors.tsv`` (kind, source, error),
  rewritten by every run, and counted in the summary; the other files still run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

__all__ = ["Task", "PrepareSummary", "voxceleb_tasks", "run_task", "prepare_voxceleb", "TRIAL_NAMES"]

TRIAL_NAMES = ("veri_test2.txt", "list_test_all2.txt", "list_test_hard2.txt")
AUDIO_IN = (".m4a", ".wav", ".flac")
SAMPLE_RATE = 16000
ERRORS = "prepare_errors.tsv"


@dataclass(frozen=True)
class Task:
    """One file to make: ``kind`` audio | faces | trials, from ``source`` to ``target`` (a folder for faces)."""

    kind: str
    source: Path
    target: Path


@dataclass
class PrepareSummary:
    """What a run did: tasks ``done`` now, ``skipped`` (made before), ``failed`` (in prepare_errors.tsv)."""

    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    errors_path: Path | None = None


def _media_roots(base: Path, kinds: tuple[str, ...], *, every: bool) -> list[Path]:
    """The folders ``base/[dev/|test/]<kind>`` that exist, for each of ``kinds`` in turn: all of them when
    ``every`` (VoxCeleb1 ships a dev and a test archive, and the E and H lists draw from both), else the
    first (VoxCeleb2: dev, the training set; its test part is not trained on)."""
    found = [base / sub / kind if sub else base / kind for kind in kinds for sub in ("", "dev", "test")]
    found = [p for p in found if p.is_dir()]
    return found if every else found[:1]


def _walk(root: Path, suffixes: tuple[str, ...]) -> Iterator[tuple[str, str, str, Path]]:
    """(speaker, video, utterance, path) under ``root/<speaker>/<video>/``, sorted; one path per
    utterance (the first of ``suffixes``)."""
    for spk in sorted(p for p in root.iterdir() if p.is_dir()):
        for video in sorted(p for p in spk.iterdir() if p.is_dir()):
            best: dict[str, Path] = {}
            for f in sorted(video.iterdir()):
                if f.suffix.lower() in suffixes and not f.name.startswith("."):
                    if f.stem not in best or suffixes.index(f.suffix.lower()) < suffixes.index(best[f.stem].suffix):
                        best[f.stem] = f
            for stem in sorted(best):
                yield spk.name, video.name, stem, best[stem]


def voxceleb_tasks(src: str | Path, dst: str | Path) -> list[Task]:
    """Every file of the prepared tree, as tasks (in a fixed order); raises ``FileNotFoundError``
    naming what is missing when SRC holds no VoxCeleb2 audio, no VoxCeleb1 audio or a trial list."""
    src, dst = Path(src), Path(dst)
    tasks: list[Task] = []
    for corpus, split in (("vox2", "train"), ("vox1", "test")):
        audio_kinds = ("aac", "wav") if corpus == "vox2" else ("wav", "aac")
        audio = _media_roots(src / corpus, audio_kinds, every=corpus == "vox1")
        if not audio:
            raise FileNotFoundError(f"{src / corpus}: no {audio_kinds[0]}/ folder of <id>/<video>/<utt> audio "
                                    f"(nor under dev/ or test/)")
        video = _media_roots(src / corpus, ("mp4",), every=corpus == "vox1")
        for kind, roots, suffixes, folder in (("audio", audio, AUDIO_IN, "wav"), ("faces", video, (".mp4",), "faces")):
            made: set[Path] = set()  # an utterance in two of the roots: the first one's
            for root in roots:
                for spk, vid, utt, path in _walk(root, suffixes):
                    target = dst / split / folder / spk / vid / (f"{utt}.wav" if kind == "audio" else utt)
                    if target not in made:
                        made.add(target)
                        tasks.append(Task(kind, path, target))
    for name in TRIAL_NAMES:
        found = [p for p in (src / name, src / "vox1" / name) if p.is_file()]
        if not found:
            raise FileNotFoundError(f"{src}: trial list {name} not found (looked in {src} and {src / 'vox1'})")
        tasks.append(Task("trials", found[0], dst / "trials" / name))
    return tasks


def _part(target: Path) -> Path:
    return target.with_name(f".{target.name}.part-{os.getpid()}")


def _ffmpeg(args: list[str]) -> None:
    out = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                         capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        raise RuntimeError(f"ffmpeg: {last}")


def run_task(task: Task) -> str:
    """Make one task's output atomically; ``"skipped"`` when it exists, else ``"done"``; an error
    (ffmpeg's last line) raises ``RuntimeError``."""
    if task.target.exists():
        return "skipped"
    task.target.parent.mkdir(parents=True, exist_ok=True)
    part = _part(task.target)
    try:
        if task.kind == "audio":
            _ffmpeg(["-i", str(task.source), "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le",
                     "-f", "wav", str(part)])
        elif task.kind == "faces":
            part.mkdir()
            _ffmpeg(["-i", str(task.source), "-an", "-vf", "fps=1", "-q:v", "2", str(part / "%04d.jpg")])
            if not any(part.iterdir()):
                raise RuntimeError("ffmpeg: no frame decoded")
        elif task.kind == "trials":
            shutil.copyfile(task.source, part)
        else:
            raise ValueError(f"unknown task kind {task.kind!r}")
        os.replace(part, task.target)
    finally:
        if part.is_dir():
            shutil.rmtree(part, ignore_errors=True)
        elif part.exists():
            part.unlink()
    return "done"


def _run_safely(task: Task) -> tuple[str, str]:
    """``(status, message)`` of :func:`run_task`: a file that cannot be converted is ``("failed", why)``,
    recorded while the other files go on."""
    try:
        return run_task(task), ""
    except Exception as e:  # ffmpeg's error, an unreadable source, a full disk: named in prepare_errors.tsv
        return "failed", " ".join(f"{type(e).__name__}: {e}".split())


def _remove_leftovers(dst: Path) -> int:
    """Delete the ``.*.part-<pid>`` files and folders a killed run left under ``dst``; how many."""
    n = 0
    for p in list(dst.rglob(".*.part-*")) if dst.exists() else []:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        n += 1
    return n


def prepare_voxceleb(src: str | Path, dst: str | Path, *, jobs: int = 1, dry_run: bool = False,
                     progress: bool = True) -> PrepareSummary:
    """Convert SRC into DST (module docstring) with ``jobs`` worker processes; ``dry_run``: count
    what would be made and skipped, write nothing. Failures go to ``DST/prepare_errors.tsv``."""
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if shutil.which("ffmpeg") is None:
        raise FileNotFoundError("ffmpeg not found on the PATH (Debian/Ubuntu: apt-get install ffmpeg)")
    dst = Path(dst)
    tasks = voxceleb_tasks(src, dst)
    summary = PrepareSummary(total=len(tasks))
    if dry_run:
        summary.skipped = sum(t.target.exists() for t in tasks)
        return summary
    _remove_leftovers(dst)
    todo = [t for t in tasks if not t.target.exists()]
    summary.skipped = len(tasks) - len(todo)
    errors: list[tuple[Task, str]] = []
    # map in chunks: a few thousand futures for a million files, results in order as they finish
    with tqdm(total=len(todo), desc="prepare voxceleb", unit="file", disable=not progress) as bar, \
            ProcessPoolExecutor(max_workers=jobs) as pool:
        for task, (status, message) in zip(todo, pool.map(_run_safely, todo, chunksize=16)):
            if status == "failed":
                errors.append((task, message))
            else:
                summary.done += 1
            bar.update()
    summary.failed = len(errors)
    dst.mkdir(parents=True, exist_ok=True)
    path = dst / ERRORS
    part = _part(path)
    rows = sorted((t.kind, str(t.source), msg) for t, msg in errors)
    part.write_text("kind\tsource\terror\n" + "".join("\t".join(r) + "\n" for r in rows))
    os.replace(part, path)
    summary.errors_path = path
    return summary
