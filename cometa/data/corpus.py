"""Which corpus a run uses: the embedded synthetic one, or VoxCeleb on disk."""
from __future__ import annotations

from dataclasses import dataclass, field

from cometa.data.synthetic import SyntheticConfig


@dataclass
class CorpusConfig:
    kind: str = "voxceleb"  # synthetic | voxceleb
    root: str = ""  # data root; for synthetic "" = cache dir keyed by the generator config
    missing_faces: str = "exclude"  # exclude | audio_only | error
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def validate(self) -> None:
        if self.kind not in ("synthetic", "voxceleb"):
            raise ValueError(f"corpus.kind must be 'synthetic' or 'voxceleb', got {self.kind!r}")
        if self.missing_faces not in ("exclude", "audio_only", "error"):
            raise ValueError(f"corpus.missing_faces must be exclude|audio_only|error, got {self.missing_faces!r}")
