"""What an evaluation pass returns: metrics per user and summarised, the ranked lists, and a text table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modalrec.data.dataset import SPLIT_NAMES


@dataclass
class EvalResult:
    """Metrics of one evaluation pass, per user and summarised.

    ``users[i]`` is the user of row ``i`` of every ``per_user`` array and of ``topk``; ``topk`` holds
    the ranked item indices (-1 where a list is shorter). ``summary`` has the per-user means (and the
    beyond-accuracy metrics in full ranking); in sampled mode it also carries ``"sampled"``.
    """

    phase: int
    users: np.ndarray
    per_user: dict[str, np.ndarray]
    summary: dict[str, Any]
    topk: np.ndarray
    sampled: str | None = None
    n_negatives: int | None = None
    ks: tuple[int, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe settings and summary (per-user arrays are left out)."""
        return {
            "phase": SPLIT_NAMES.get(self.phase, str(self.phase)),
            "n_users": int(len(self.users)),
            "ks": [int(k) for k in self.ks],
            "protocol": "full" if self.sampled is None else "sampled",
            "sampled": self.sampled,
            "n_negatives": None if self.n_negatives is None else int(self.n_negatives),
            "metrics": {key: float(value) for key, value in self.summary.items() if key != "sampled"},
        }

    def format_table(self) -> str:
        """A plain-text table: one row per metric, one column per cutoff."""
        header = f"{SPLIT_NAMES.get(self.phase, str(self.phase)).upper()} — {len(self.users):,} users — "
        if self.sampled is None:
            header += "full ranking, seen items masked"
        else:
            header += (
                f"(sampled: {self.sampled}) !! SAMPLED EVALUATION: relevant items ranked against "
                f"{self.n_negatives} sampled negatives, NOT the full catalogue; optimistic and not "
                "comparable with full-ranking numbers"
            )
        names: list[str] = []
        for key in self.summary:
            if "@" in key and key.split("@")[0] not in names:
                names.append(key.split("@")[0])
        width = max([len("metric"), *map(len, names)])
        lines = [header, f"{'metric':<{width}}" + "".join(f"{'@' + str(k):>12}" for k in self.ks)]
        for name in names:
            cells = "".join(_format_cell(self.summary.get(f"{name}@{k}")) for k in self.ks)
            lines.append(f"{name:<{width}}{cells}")
        return "\n".join(lines)


def _format_cell(value: float | None) -> str:
    if value is None:
        return f"{'-':>12}"
    return f"{value:>12.4f}" if abs(value) < 1000 else f"{value:>12.1f}"
