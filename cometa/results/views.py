"""What the step notebooks display: small tables and plotly figures read back from the run store."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cometa.runs import RunStore



def show(fig: go.Figure) -> None:
    """Display a figure in the notebook as plotly JSON (JupyterLab renders it; the executed notebook
    stays small: no copy of plotly.js, and no nbformat/jsonschema import in every kernel)."""
    from IPython.display import display

    import json

    display({"application/vnd.plotly.v1+json": json.loads(fig.to_json()), "text/plain": f"<{fig.layout.title.text}>"},
            raw=True)


def counts_table(counts: dict) -> pd.DataFrame:
    flat = pd.json_normalize(counts, sep=".").T
    flat.columns = ["value"]
    return flat


def metrics_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """EER (%) and minDCF per trial list (rows) and modality (columns)."""
    if metrics is None or metrics.empty:
        return pd.DataFrame()
    m = metrics.copy()
    m.loc[m["name"] == "eer", "value"] *= 100
    m["name"] = m["name"].replace({"eer": "EER %"})
    return m.pivot_table(index=["list", "name"], columns="modality", values="value").round(3)


def label_table(quality: pd.DataFrame) -> pd.DataFrame:
    """Label quality per view (columns) and metric (rows)."""
    if quality is None or quality.empty:
        return pd.DataFrame()
    return quality.pivot_table(index="name", columns="modality", values="value").round(4)


def corpus_sample(run_dir: str | Path) -> go.Figure:
    """Log-mel spectrogram of one training utterance and its face frames."""
    from cometa.config import load_run_config
    from cometa.data.voxceleb import load_audio, load_frames
    from cometa.models.features import LogMel
    from cometa.pipeline.steps import load_corpus

    import torch

    cfg = load_run_config(Path(run_dir) / "config.yaml")
    corpus = load_corpus(cfg)
    row = corpus.train.iloc[0]
    wave = load_audio(row["audio_path"])
    spec = LogMel.from_config(cfg.features)(torch.from_numpy(wave)[None])[0].numpy()
    frames = load_frames(list(row["frame_paths"]), size=cfg.visual_encoder.image_size) if row["n_frames"] else None
    n = 0 if frames is None else min(len(frames), 4)
    fig = make_subplots(rows=1, cols=1 + n, column_widths=[0.6] + [0.4 / max(n, 1)] * n,
                        subplot_titles=[f"{row['key']} log-mel"] + [f"frame {i + 1}" for i in range(n)])
    fig.add_trace(go.Heatmap(z=spec, colorscale="Viridis", showscale=False), 1, 1)
    for i in range(n):
        fig.add_trace(go.Image(z=frames[i]), 1, 2 + i)
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def stage1_loss(run_dir: str | Path) -> go.Figure:
    df = RunStore(run_dir).scalars(stage="stage1", name="loss_csl")
    fig = go.Figure(go.Scatter(x=df["epoch"], y=df["value"], mode="lines+markers", name="L_CSL"))
    fig.update_layout(title="Stage I contrastive loss (Eq. 2)", xaxis_title="epoch", yaxis_title="loss", height=300)
    return fig


def round_dynamics(run_dir: str | Path, strategy: str, round_: int) -> go.Figure:
    """Per-epoch |D̄'|/|D̄|, λ(e), selected fractions and losses of one round."""
    df = RunStore(run_dir).scalars(strategy=strategy, stage="train", round=round_)
    df = df[df["step"].isna()]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["selection", "support loss"])
    for name in ("disagreement_frac", "lambda", "selected_frac_audio", "selected_frac_visual"):
        d = df[df["name"] == name]
        if not d.empty and np.isfinite(d["value"]).any():
            fig.add_trace(go.Scatter(x=d["epoch"], y=d["value"], mode="lines+markers", name=name), 1, 1)
    for m in ("audio", "visual"):
        d = df[(df["name"] == "loss_support") & (df["modality"] == m)]
        fig.add_trace(go.Scatter(x=d["epoch"], y=d["value"], mode="lines+markers", name=f"loss {m}"), 1, 2)
    fig.update_layout(title=f"{strategy}, round {round_}", height=320, xaxis_title="epoch")
    return fig


def projection(run_dir: str | Path, strategy: str, round_: int, *, view: str = "joint") -> go.Figure:
    """The round's projection coloured by the true identity."""
    store = RunStore(run_dir)
    rel = Path(strategy) / f"round_{round_}"
    p = store.load_table(rel / "projection.parquet")
    p = p[p["view"] == view]
    labels = store.load_table(rel / "labels.parquet").set_index("key")
    speaker = labels["speaker"].reindex(p["key"]).astype("category").cat.codes
    fig = go.Figure(go.Scattergl(x=p["x"], y=p["y"], mode="markers",
                                 marker=dict(size=4, color=speaker, colorscale="Turbo"), text=p["key"]))
    fig.update_layout(title=f"{strategy}, round {round_}: {view} embeddings (colour = true identity)", height=420)
    return fig
