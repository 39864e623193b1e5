"""Reading per-run results back in the notebooks: probe arrays with the run they belong to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_RUN = re.compile(r"(?P<dataset>[^/]+)/(?P<model>[^/]+)/seed(?P<seed>\d+)/probes/(?P<probe>[^/]+)\.npz$")


@dataclass(frozen=True)
class ProbeResult:
    """One run's probe: where it came from and its arrays (loaded eagerly, closed file)."""

    dataset: str
    model: str
    seed: int
    probe: str
    path: Path
    arrays: dict[str, np.ndarray]


def load_probe(path: str | Path) -> ProbeResult:
    """Read ``results/{dataset}/{model}/seed{seed}/probes/{probe}.npz``."""
    path = Path(path)
    match = _RUN.search(path.as_posix())
    if match is None:
        raise ValueError(f"{path} is not a probe file of the form <dataset>/<model>/seed<N>/probes/<probe>.npz")
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return ProbeResult(match["dataset"], match["model"], int(match["seed"]), match["probe"], path, arrays)


def load_probes(paths: list[str | Path]) -> list[ProbeResult]:
    """Every probe file given, sorted by (dataset, model, seed)."""
    results = [load_probe(p) for p in paths]
    return sorted(results, key=lambda r: (r.dataset, r.model, r.seed))
