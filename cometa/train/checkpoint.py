"""Checkpoints: model/optimiser state and RNG states, written atomically, loaded with weights_only=True."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch

from cometa.runs import fault_point


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary name in the same directory, then rename (never a half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        torch.save(state, tmp)
        fault_point(f"write:{path}")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none. Tensors and plain containers only."""
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location=map_location, weights_only=True)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_progress(step_dir: str | Path, *, done: int, total: int, desc: str) -> None:
    """Record a step's progress (epochs done of total) for the orchestrator's nested progress bar."""
    path = Path(step_dir) / "progress.json"
    tmp = path.with_name(f"progress.json.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"done": done, "total": total, "desc": desc}))
    fault_point(f"write:{path}")
    os.replace(tmp, path)
