"""Check a finished run (or a study of several seeds) against the demo's scientific criteria.

    python tools/study_criteria.py RUN_OR_STUDY_DIR [--json OUT.json]

For every seed and as mean ± std over the seeds it prints, from the run stores only:

- Stage I's audio EER and each strategy's last-round audio EER on the O-like list, with the
  relative change (criterion: >= 25 % below Stage I for every strategy);
- consensus purity in round 1 (criterion: in [0.60, 0.85]) and in the last round (>= round 1 + 0.08);
- in the last round, per strategy and modality, the wrong-label rate of what each small-loss selection
  leaves out of D' over the rate of D' itself (epoch means of ``dropped_noisy_frac`` and
  ``disagreement_noisy_frac``, :func:`cometa.results.last_round.selection_enrichment`; criterion >= 1.5
  for co-teaching+ and Co-Meta);
- each strategy's last-round visual EER against the handcrafted face baseline, and both handcrafted
  baselines (criterion >= 20 %);
- whether the H-like list is the hardest list for every trained model (Stage I, and each strategy's
  last-round audio and visual model);
- the lambda of the first Stage II epoch (criterion: 1);
- how the last round's labels sit on the recording sessions (no criterion; the reason the selection
  filters little): the share of wrong consensus labels whose whole video is wrong under one label, and
  the visual labels' session coherence, read from the label tables (so older runs have them too);
- which identities the labels confuse (no criterion; embedded corpus only, whose ``speakers.csv``
  holds each identity's latent voice and face): for round 1 and the last round, over the wrong
  consensus labels (:func:`cometa.core.label_quality.confused_pairs`), the share whose speaker has the
  gender of its cluster's majority, and the mean latent voice and face distance between the two
  (:func:`cometa.data.synthetic.voice_latent_distances`, ``face_latent_distances`` over the training
  identities) over the mean of all same-gender pairs of training identities: 1 is as alike as two
  same-gender strangers, below 1 more alike;
- how each last-round model tells identities of one gender apart against identities of two (no
  criterion; embedded corpus only): the O-like list's EER with every target trial and only its
  same-gender non-targets, and with only its cross-gender ones (:func:`gender_split_eer`).

Nothing is changed; the exit status is 0 whether or not the criteria hold (this is a report).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cometa.core.label_quality import confused_pairs, session_coherence, session_of, wrong_whole_session_frac
from cometa.results.last_round import seed_figures
from cometa.results.report import read_scalars
from cometa.runs import RunStore, grid_study, study_runs

STRATEGIES = ("baseline", "coteaching_plus", "cometa")


def _round_files(run: Path, strategy: str, name: str) -> list[Path]:
    """``run/strategy/round_<r>/name`` of every round that has it, in round order."""
    return sorted((run / strategy).glob(f"round_*/{name}"), key=lambda p: int(p.parent.name[len("round_"):]))


def _speakers_csv(run: Path) -> Path | None:
    """The run's corpus' speakers.csv (the embedded corpus' identities and latents), None elsewhere."""
    path = Path(json.loads((run / "corpus" / "counts.json").read_text())["root"]) / "speakers.csv"
    return path if path.is_file() else None


def session_figures(run: Path, strategy: str) -> dict:
    """The last round's session structure of the labels, from its labels.parquet."""
    rounds = _round_files(run, strategy, "labels.parquet")
    if not rounds:
        return {}
    t = pd.read_parquet(rounds[-1])
    sessions = session_of(t["key"])
    truth = pd.factorize(t["speaker"])[0]
    return {"wrong_whole_session_consensus": wrong_whole_session_frac(truth, sessions, t["consensus"].to_numpy()),
            "session_coherence_visual": session_coherence(sessions, t["visual"].to_numpy())}


def confusion_figures(table: pd.DataFrame, speakers: pd.DataFrame) -> dict:
    """How alike the identities are that a round's labels (``table``: labels.parquet) confuse, from
    the embedded corpus' ``speakers`` table (speakers.csv): ``same_gender``, ``voice_ratio``,
    ``face_ratio`` (see the module's docstring); {} without wrong labels."""
    from cometa.data.synthetic import face_latent_distances, voice_latent_distances

    pairs = confused_pairs(table["speaker"].to_numpy(), table["consensus"].to_numpy())
    if pairs.empty:
        return {}
    rows = speakers[speakers["split"] == "train"].to_dict("records")
    index = {r["speaker"]: i for i, r in enumerate(rows)}
    a, b = pairs["speaker"].map(index).to_numpy(), pairs["majority"].map(index).to_numpy()
    gender = np.array([r["gender"] for r in rows])
    strangers = (gender[:, None] == gender[None, :]) & ~np.eye(len(rows), dtype=bool)
    out = {"same_gender": float((gender[a] == gender[b]).mean())}
    for name, dist in (("voice", voice_latent_distances(rows)), ("face", face_latent_distances(rows))):
        out[f"{name}_ratio"] = float(dist[a, b].mean() / dist[strangers].mean())
    return out


def gender_split_eer(scores, labels, same_gender) -> tuple[float, float]:
    """(EER with every target and the same-gender non-targets only, EER with every target and the
    cross-gender non-targets only) of a trial list's ``scores`` and ``labels`` (1 target, 0 not);
    ``same_gender`` (M,) bool says whether each trial's two identities share a gender."""
    from cometa.evaluation.metrics import eer

    scores, labels, same_gender = np.asarray(scores, float), np.asarray(labels), np.asarray(same_gender, bool)
    target = labels == 1
    return tuple(float(eer(scores[target | keep], labels[target | keep])[0])  # type: ignore[return-value]
                 for keep in (~target & same_gender, ~target & ~same_gender))


def _gender_eers(run: Path, strategy: str) -> dict:
    """:func:`gender_split_eer` of the last round's audio and visual models on the O-like list ({} off
    the embedded corpus)."""
    from cometa.evaluation.baselines import cosine_scores, read_trials

    speakers, rounds = _speakers_csv(run), _round_files(run, strategy, "test_embeddings.npz")
    if speakers is None or not rounds:
        return {}
    gender = pd.read_csv(speakers).set_index("speaker")["gender"]
    labels, enroll, test = read_trials(speakers.parent / "trials" / "veri_test2.txt")
    same = np.array([gender[a.split("/")[0]] == gender[b.split("/")[0]] for a, b in zip(enroll, test)])
    emb = np.load(rounds[-1])
    index = {k: i for i, k in enumerate(emb["keys"].tolist())}
    e, t = np.array([index[u] for u in enroll]), np.array([index[u] for u in test])
    return {f"gender_eer_{m}": gender_split_eer(cosine_scores(emb[m], e, t), labels, same) for m in ("audio", "visual")}


def _confusions(run: Path, strategy: str) -> dict:
    """:func:`confusion_figures` of round 1 and of the last round ({} off the embedded corpus)."""
    path, rounds = _speakers_csv(run), _round_files(run, strategy, "labels.parquet")
    if path is None or not rounds:
        return {}
    speakers = pd.read_csv(path)
    return {"confusions_round1": confusion_figures(pd.read_parquet(rounds[0]), speakers),
            "confusions_last": confusion_figures(pd.read_parquet(rounds[-1]), speakers)}


def _baselines(run: Path) -> dict:
    from cometa.evaluation.baselines import baseline_eers

    root = Path(json.loads((run / "corpus" / "counts.json").read_text())["root"])
    return {lst: baseline_eers(root, trials=f) for lst, f in
            (("O", "veri_test2.txt"), ("E", "list_test_all2.txt"), ("H", "list_test_hard2.txt"))}


def _ms(values) -> str:
    v = np.array([x for x in values if not math.isnan(x)], float)
    if not len(v):
        return "-"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    root = Path(args.run_dir)
    if grid_study(root) is not None:  # its runs are cells x seeds, not the seeds of one study
        cells = [c["name"] for c in grid_study(root)["cells"]]  # type: ignore[index]
        print(f"{root} is a grid study: give one of its cells ({', '.join(cells)}), or read its report "
              f"(cometa report {root})", file=sys.stderr)
        return 2
    runs = study_runs(root) or [root]
    figs = {}
    for run in runs:
        seed = RunStore(run).config().get("seed")
        figs[seed] = seed_figures(read_scalars(run))
        for s in STRATEGIES:
            if s in figs[seed]:
                figs[seed][s].update(session_figures(run, s), **_confusions(run, s), **_gender_eers(run, s))
    base = _baselines(runs[0])
    pct = lambda x: f"{100 * x:.2f}"  # noqa: E731
    print(f"{root}: {len(runs)} seed(s) {list(figs)}")
    print("handcrafted baselines (EER %):", {k: {m: pct(v) for m, v in d.items()} for k, d in base.items()})
    lines = []
    for s in STRATEGIES:
        per = [f[s] for f in figs.values() if s in f]
        if not per:
            continue
        rel = [(f["stage1_eer"]["O"] - f[s]["audio_eer"]["O"]) / f["stage1_eer"]["O"] for f in figs.values()]
        lines.append(f"{s:16s} audio O {_ms([100 * p['audio_eer']['O'] for p in per])} %  "
                     f"rel. below Stage I {_ms([100 * r for r in rel])} %  | visual O "
                     f"{_ms([100 * p['visual_eer']['O'] for p in per])} % (face baseline {pct(base['O']['face'])})")
        gain = _ms([p["purity_last"] - p["purity_round1"] for p in per])
        lines.append(f"{'':16s} purity round 1 {_ms([p['purity_round1'] for p in per])} -> last "
                     f"{_ms([p['purity_last'] for p in per])} (gain {gain})")
        lines.append(f"{'':16s} wrong labels: D' {_ms([p['disagreement_noisy'] for p in per])}; left out / D': audio "
                     f"{_ms([p['dropped_ratio_audio'] for p in per])}, "
                     f"visual {_ms([p['dropped_ratio_visual'] for p in per])}")
        hard = all(p[f"{m}_eer"]["H"] > max(p[f"{m}_eer"]["O"], p[f"{m}_eer"]["E"])
                   for p in per for m in ("audio", "visual"))
        lines.append(f"{'':16s} H hardest for its audio and visual models in every seed: {hard}")
        lines.append(f"{'':16s} wrong consensus labels in wholly wrong videos "
                     f"{_ms([p.get('wrong_whole_session_consensus', math.nan) for p in per])}; visual session "
                     f"coherence {_ms([p.get('session_coherence_visual', math.nan) for p in per])}")
        for m in ("audio", "visual"):
            g = [p[f"gender_eer_{m}"] for p in per if f"gender_eer_{m}" in p]
            if g:
                lines.append(f"{'':16s} {m} O EER with same-gender non-targets only {_ms([100 * x[0] for x in g])} %, "
                             f"cross-gender only {_ms([100 * x[1] for x in g])} %")
        for when in ("round1", "last"):
            c = [p.get(f"confusions_{when}", {}) for p in per]
            if any(c):
                lines.append(f"{'':16s} confused identities ({when.replace('round1', 'round 1')}): same gender "
                             f"{_ms([x.get('same_gender', math.nan) for x in c])}; voice distance / strangers' "
                             f"{_ms([x.get('voice_ratio', math.nan) for x in c])}, face "
                             f"{_ms([x.get('face_ratio', math.nan) for x in c])}")
    s1 = [f["stage1_eer"] for f in figs.values()]
    s1_hard = all(x["H"] > max(x["O"], x["E"]) for x in s1)
    print(f"Stage I audio O {_ms([100 * x['O'] for x in s1])} %  (H hardest: {s1_hard})")
    print("\n".join(lines))
    print(f"lambda in the first epoch: {sorted({f['lambda_first_epoch'] for f in figs.values()})}")
    if args.json:
        Path(args.json).write_text(json.dumps({"seeds": figs, "baselines": base}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
