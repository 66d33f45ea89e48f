"""2-D projections (UMAP) of embeddings per round, aligned across rounds, computed by the pipeline.

The dashboard's Embeddings view and the report's UMAP grid show how the clustered embeddings
(``embeddings.npz``, clustered at the start of round r) move from round to round. For that the
pictures of consecutive rounds must share a frame, so each round is aligned onto the previous one.

Why per-round UMAP + orthogonal Procrustes rather than ``umap.AlignedUMAP``:

* The pipeline finishes one round at a time (and resumes); Procrustes aligns round r to the already
  written projection of round r-1, so nothing earlier is recomputed. AlignedUMAP needs every round up
  front and its cost grows with the number of rounds.
* Procrustes is a rigid motion (rotation/reflection + translation, no scaling), so each round's
  picture is exactly the UMAP of that round's embeddings: distances inside a round keep their
  meaning and only the frame moves. AlignedUMAP trades within-round fidelity for smoothness.
* UMAP's layout is only defined up to rotation, reflection and translation, which is exactly the
  freedom Procrustes removes.

Subsampling is by a keyed hash (``blake2b(seed:key)``), so the same utterances are kept in every
round whatever order the keys come in, and the animation follows the same points.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cometa.config.sections import ProjectionConfig
from cometa.core.label_quality import cluster_majority

__all__ = ["ProjectionConfig", "subsample_keys", "procrustes_fit", "project_embeddings", "project_round",
           "project_rounds", "projection_labels", "LABEL_COLUMNS"]

LABEL_COLUMNS = ("audio", "visual", "joint", "consensus")  # the pseudo labels a projection carries


os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(os.environ.get("COMETA_CACHE") or Path.home() / ".cache" / "cometa")
                                            / "numba"))


def subsample_keys(keys: list[str] | np.ndarray, max_points: int, *, seed: int) -> np.ndarray:
    """Indices (sorted) of at most ``max_points`` keys, chosen by a seeded hash of each key.

    A key's rank depends only on ``(seed, key)``, so two rounds over the same keys keep the same
    utterances, and a round with extra keys keeps the old ones it still has.
    """
    keys = [str(k) for k in keys]
    if max_points <= 0:
        raise ValueError(f"projection.max_points must be positive, got {max_points}")
    if len(keys) <= max_points:
        return np.arange(len(keys))
    rank = np.array([int.from_bytes(hashlib.blake2b(f"{seed}:{k}".encode(), digest_size=8).digest(), "big")
                     for k in keys], dtype=np.uint64)
    return np.sort(np.argsort(rank, kind="stable")[:max_points])


def procrustes_fit(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (or reflection) ``R`` (d, d) and translation ``t`` (d,) minimising ||source R + t - target||.

    Orthogonal Procrustes (Schönemann 1966): with centred ``A = source - mean``, ``B = target - mean``
    and ``U S V^T = svd(A^T B)``, ``R = U V^T`` and ``t = mean(target) - mean(source) R``.

    Parameters
    ----------
    source, target : (n, d) arrays of corresponding points, n >= 1.
    """
    source, target = np.asarray(source, float), np.asarray(target, float)
    if source.shape != target.shape or source.ndim != 2 or len(source) == 0:
        raise ValueError(f"procrustes_fit needs two (n, d) arrays of the same shape, got {source.shape} "
                         f"and {target.shape}")
    mu_s, mu_t = source.mean(0), target.mean(0)
    u, _, vt = np.linalg.svd((source - mu_s).T @ (target - mu_t))
    rot = u @ vt  # (d, d)
    return rot, mu_t - mu_s @ rot


def project_embeddings(embeddings: np.ndarray, *, cfg: ProjectionConfig, seed: int) -> np.ndarray:
    """(n, 2) UMAP of (n, D) embeddings (cosine metric); PCA when n is too small for a neighbour graph."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (n, D), got shape {x.shape}")
    n = len(x)
    if n < max(cfg.n_neighbors + 2, 5):  # UMAP's spectral init needs a graph; a handful of points does not
        return _pca2(x)
    umap = _umap()
    k = min(cfg.n_neighbors, n - 1)
    knn_index, knn_dist = _exact_knn(x, k)
    reducer = umap.UMAP(n_neighbors=k, min_dist=cfg.min_dist, metric="cosine", random_state=seed, n_components=2,
                        precomputed_knn=(knn_index, knn_dist, None), n_epochs=cfg.n_epochs or None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")  # random_state forces one thread
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")  # we never call transform()
        return np.asarray(reducer.fit_transform(x), dtype=float)


def _exact_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine k-nearest neighbours (self first) with faiss: (n, k) indices and 1 - cos distances.

    Exact search costs n² D flops (50k points at D = 192: ~5·10^11, seconds) and spares UMAP its
    nearest-neighbour descent, whose numba kernels cannot be cached and recompile in every process.
    """
    import faiss  # only the projection step needs it: not loaded when the module is imported for its config

    xn = np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), dtype=np.float32)
    index = faiss.IndexFlatIP(xn.shape[1])
    index.add(xn)
    sim, nn = index.search(xn, k)
    self_first = nn[:, 0] == np.arange(len(xn))
    if not self_first.all():  # exact duplicates: put the point itself first
        rows = np.flatnonzero(~self_first)
        for r in rows:
            others = [j for j in nn[r] if j != r][: k - 1]
            nn[r] = [r, *others]
            sim[r] = [1.0, *(xn[others] @ xn[r])]
    dist = np.maximum(1.0 - sim, 0.0).astype(np.float32)
    dist[:, 0] = 0.0
    return nn.astype(np.int64), dist


def _umap():
    """umap-learn, with its two parallel numba kernels recompiled with ``cache=True``.

    umap compiles ``smooth_knn_dist`` and ``compute_membership_strengths`` (parallel=True, no
    cache) afresh in every process: ~8 s per pipeline step on 2 cores. Cached copies in
    ``NUMBA_CACHE_DIR`` (default ``~/.cache/cometa/numba``) bring a warm projection step to ~1 s.
    """
    # umap and numba take seconds to import: only the projection step pays for them
    import numba
    import umap
    import umap.umap_ as umap_module

    for name in ("smooth_knn_dist", "compute_membership_strengths"):
        f = getattr(umap_module, name)
        if not getattr(f, "_cometa_cached", False):
            options = {k: v for k, v in f.targetoptions.items() if k != "nopython"}
            g = numba.njit(cache=True, **options)(f.py_func)
            g._cometa_cached = True
            setattr(umap_module, name, g)
    return umap


def _pca2(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(0)
    if len(x) < 2:
        return np.zeros((len(x), 2))
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    out = xc @ vt[:2].T
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def project_round(prev_projection: pd.DataFrame | None, embeddings: np.ndarray, keys: list[str] | np.ndarray,
                  *, cfg: ProjectionConfig, seed: int) -> pd.DataFrame:
    """Project one round's embeddings and align them onto the previous round's projection.

    Parameters
    ----------
    prev_projection : the previous round's output (columns ``key, x, y``; other columns ignored), or
        None for the first round.
    embeddings : (N, D) array, row i belongs to ``keys[i]``; rows that are not finite (no face
        frames) are left out.
    keys : N utterance keys.

    Returns
    -------
    DataFrame with columns ``key, x, y, n_total`` (at most ``cfg.max_points`` rows, chosen by
    :func:`subsample_keys`; ``n_total`` = N, the count before subsampling, repeated so it survives
    any file format) and ``attrs`` ``{"max_points", "n_total", "aligned_on"}`` (``aligned_on`` = how many
    shared keys the Procrustes fit used; 0 = unaligned).
    """
    keys = np.asarray([str(k) for k in keys])
    emb = np.asarray(embeddings)
    if len(keys) != len(emb):
        raise ValueError(f"{len(keys)} keys but {len(emb)} embedding rows")
    finite = np.isfinite(emb).all(axis=1)  # a face embedding of an utterance without faces is NaN
    keys, emb = keys[finite], emb[finite]
    idx = subsample_keys(keys, cfg.max_points, seed=seed)
    xy = project_embeddings(emb[idx], cfg=cfg, seed=seed)
    aligned_on = 0
    if prev_projection is not None and len(prev_projection):
        prev = prev_projection.drop_duplicates("key").set_index("key")[["x", "y"]]
        shared = np.flatnonzero(np.isin(keys[idx], prev.index))
        if len(shared) >= 3:  # fewer points leave the rotation undetermined
            rot, t = procrustes_fit(xy[shared], prev.loc[keys[idx][shared]].to_numpy(float))
            xy = xy @ rot + t
            aligned_on = len(shared)
    out = pd.DataFrame({"key": keys[idx], "x": xy[:, 0], "y": xy[:, 1], "n_total": len(keys)})
    out.attrs.update(max_points=int(cfg.max_points), n_total=int(len(keys)), aligned_on=int(aligned_on))
    return out


def project_rounds(embeddings_by_round: list[np.ndarray], *, cfg: ProjectionConfig, seed: int,
                   keys_by_round: list[list[str] | np.ndarray]) -> list[pd.DataFrame]:
    """Projections of rounds 1..R, each aligned onto the one before (see :func:`project_round`)."""
    if len(embeddings_by_round) != len(keys_by_round):
        raise ValueError(f"{len(embeddings_by_round)} rounds of embeddings but {len(keys_by_round)} of keys")
    out: list[pd.DataFrame] = []
    for emb, keys in zip(embeddings_by_round, keys_by_round):
        out.append(project_round(out[-1] if out else None, emb, keys, cfg=cfg, seed=seed))
    return out


def projection_labels(projection: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The projection with its points' labels: what the dashboard and the report show of them.

    Parameters
    ----------
    projection : a round's projection (``key, x, y, ...``; the pipeline's 50,000 points a view at most).
    labels : the round's ``labels.parquet`` (``key, speaker`` and the cluster ids of :data:`LABEL_COLUMNS`;
        -1 = dropped), N rows.

    Returns
    -------
    A copy with ``speaker`` and, per label column present, ``<column>`` (the point's cluster id) and
    ``correct_<column>`` (1.0 when its cluster's majority speaker, over all N rows, is its own speaker,
    0.0 when not, NaN where dropped), so that a view of the round reads the projection alone and
    never the N-row table. A key missing from ``labels`` gets NaN.
    """
    lab = labels.set_index("key")
    speaker = lab["speaker"].to_numpy(dtype=object)
    out = projection.copy()
    out["speaker"] = lab["speaker"].reindex(out["key"]).to_numpy()
    for column in LABEL_COLUMNS:
        if column not in lab:
            continue
        ids = lab[column].to_numpy()
        valid = ids >= 0
        major = cluster_majority(speaker[valid], ids[valid])  # cluster id -> majority speaker
        correct = (pd.Series(ids).map(major).to_numpy(dtype=object) == speaker).astype(float)  # (N,)
        correct[~valid] = np.nan
        out[column] = lab[column].reindex(out["key"]).to_numpy()
        out[f"correct_{column}"] = pd.Series(correct, index=lab.index).reindex(out["key"]).to_numpy()
    return out
