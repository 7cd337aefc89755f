"""One sampled student of a search as a typed row: what ``log.csv`` lists, what the search checkpoint keeps, and
what the best student and the report are read from."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: ``log.csv``'s columns, in order; they are ``SearchRow``'s fields
LOG_FIELDS = ("episode", "sample", "key", "params", "compression", "auc", "reward", "cached", "widths")


@dataclass(frozen=True)
class SearchRow:
    """One student sampled in one episode: its architecture, size, proxy AUC and the reward they earned."""

    #: counted from 0
    episode: int
    #: the student's place among the episode's samples
    sample: int
    #: the architecture's identity, shared by every sample of the same widths
    key: str
    params: int
    #: teacher parameters / student parameters
    compression: float
    #: validation AUC after the proxy distillation
    auc: float
    reward: float
    #: whether the AUC came from the cache rather than a distillation of this sample
    cached: bool
    #: channels per width group
    widths: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        """The row as the search checkpoint keeps it."""
        return {name: getattr(self, name) for name in LOG_FIELDS} | {"widths": dict(self.widths)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SearchRow:
        return cls(
            episode=int(raw["episode"]),
            sample=int(raw["sample"]),
            key=str(raw["key"]),
            params=int(raw["params"]),
            compression=float(raw["compression"]),
            auc=float(raw["auc"]),
            reward=float(raw["reward"]),
            cached=bool(raw["cached"]),
            widths={str(group): int(width) for group, width in raw["widths"].items()},
        )

    def to_csv(self) -> dict[str, Any]:
        """The row as ``log.csv`` lists it: the widths as a JSON object in one cell."""
        return self.to_json() | {"widths": json.dumps(dict(self.widths))}

    @classmethod
    def from_csv(cls, raw: Mapping[str, str]) -> SearchRow:
        """A row of ``log.csv``, read by ``csv.DictReader``."""
        return cls.from_json({**raw, "cached": raw["cached"] == "True", "widths": json.loads(raw["widths"])})
