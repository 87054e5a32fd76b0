"""The tabular MLP: numeric features and one embedding per categorical column.

Plain torch, no Ray: the training loop, the pyfunc model and the Serve replicas all
build it from the same ``ModelSpec``, which is saved next to the weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPEC_FILE = "model.json"
WEIGHTS_FILE = "model.pt"


@dataclass
class ModelSpec:
    task: str
    n_numeric: int
    cardinalities: list[int]
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.1
    max_embedding_dim: int = 16

    @property
    def embedding_dims(self) -> list[int]:
        return [min(self.max_embedding_dim, (card + 1) // 2 + 1) for card in self.cardinalities]

    def save(self, directory: Path) -> None:
        (directory / SPEC_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, directory: Path) -> ModelSpec:
        return cls(**json.loads((directory / SPEC_FILE).read_text()))


def build_model(spec: ModelSpec) -> Any:
    import torch
    from torch import nn

    class TabularMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = nn.ModuleList(
                nn.Embedding(card, dim) for card, dim in zip(spec.cardinalities,
                                                             spec.embedding_dims, strict=True))
            layers: list[nn.Module] = []
            width = spec.n_numeric + sum(spec.embedding_dims)
            for size in spec.hidden:
                layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(spec.dropout)]
                width = size
            layers.append(nn.Linear(width, 1))
            self.net = nn.Sequential(*layers)

        def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
            parts = [numeric, *(emb(codes[:, j]) for j, emb in enumerate(self.embeddings))]
            return self.net(torch.cat(parts, dim=1)).squeeze(-1)

    return TabularMLP()


def load_model(directory: Path) -> tuple[Any, ModelSpec]:
    """The trained MLP on CPU in eval mode, from a checkpoint or model folder."""
    import torch

    spec = ModelSpec.load(directory)
    model = build_model(spec)
    model.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu",
                                     weights_only=True))
    model.eval()
    return model, spec


def predict(model: Any, spec: ModelSpec, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Probabilities of the positive class (classification) or values (regression)."""
    import torch

    with torch.inference_mode():
        out = model(torch.from_numpy(np.ascontiguousarray(numeric, dtype=np.float32)),
                    torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64)))
        if spec.task == "classification":
            out = torch.sigmoid(out)
    return np.asarray(out.float().numpy(), dtype=np.float64)
