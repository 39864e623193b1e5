"""Per-run probes: what the analyses need from each trained model beyond metrics.json.

A probe loads one trained run, computes arrays (per-example scores, spectra, latents…) and
the run's probe job (rules ``probe_<probes>``, one process per run for all of its probes) writes them
to ``results/{dataset}/{model}/seed{seed}/probes/{probe}.npz``, so the heavy model work runs once per
run, in parallel and cached, and the analysis notebooks only aggregate. Each probe is one module of this package with

* ``probe(model, data, settings, others) -> dict[str, np.ndarray]``: the arrays, from the
  trained ``model`` (eval mode), its :class:`~vaeflow.data.PreparedDataset` ``data``, the
  ``analyses.<probe>`` block of the config (``settings``, with ``seed``), and the other
  prepared datasets of the study by name (``others``; only probes that need them get them).

The registry below says which runs each probe covers (:func:`applies`, by the model's registry
card and whether the dataset is images) and which keys of its settings block only
the notebook reads (:data:`NOTEBOOK_KEYS`; the probe job leaves them out of the probe's
settings, so changing one reruns the notebook and not every probe). Both live here, not in
the probe modules, because the workflow asks them while planning jobs and the probe modules
load torch and the models.

Arrays must be finite where they are numbers the analyses average; a probe says in its
docstring which arrays may hold NaN and why.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from vaeflow.models import registry

#: probe name -> module; the config's ``analyses`` block has one settings block per probe
PROBES: dict[str, str] = {
    "likelihood": "vaeflow.probes.likelihood",
    "high_frequency": "vaeflow.probes.high_frequency",
    "anomaly": "vaeflow.probes.anomaly",
    "latents": "vaeflow.probes.latents",
}

#: probes that read the other datasets of the study (their npz files are rule inputs)
NEEDS_OTHER_DATASETS = {"anomaly"}

#: keys of each probe's settings block that only its notebook reads
NOTEBOOK_KEYS: dict[str, frozenset[str]] = {
    "likelihood": frozenset(),
    "high_frequency": frozenset({"bootstrap", "confidence", "grid_dataset"}),
    "anomaly": frozenset({"typicality_batch"}),
    "latents": frozenset(
        {"probe_C", "probe_max_iter", "variance_fraction", "active_threshold", "figure_dataset", "scatter_points"}
    ),
}


def applies(probe: str, model: str, dataset: str, image: bool) -> bool:
    """Whether ``probe`` covers the run of ``model`` on ``dataset`` (``image``: a dataset of images).

    * likelihood: the runs that report a bound (the model's registry card,
      :meth:`vaeflow.models.ModelCard.reports_bound`: the VAEs everywhere, Flow++ on images);
    * high_frequency and anomaly: every model on every image dataset (spectra and
      out-of-distribution images need images; 2-D toy data have neither);
    * latents: every run (a VAE's posterior, a flow's base variable).

    The workflow asks this while planning, which must not import torch: the card is read from the
    model's source; tests/test_model_contract.py checks it against the built models.
    """
    if probe == "likelihood":
        cards = registry()
        if model not in cards:
            raise ValueError(f"unknown model {model!r}; known models: {', '.join(cards)}")
        return cards[model].reports_bound(bool(image))
    if probe in ("high_frequency", "anomaly"):
        return bool(image)
    if probe == "latents":
        return True
    raise ValueError(f"unknown probe {probe!r}; known probes: {', '.join(PROBES)}")


def probe_module(name: str) -> ModuleType:
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; known probes: {', '.join(PROBES)}")
    return importlib.import_module(PROBES[name])


def model_name(model: object) -> str:
    """The registry name (``vae``, ``flowpp``…) of a model instance."""
    from vaeflow.models import MODELS

    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a model of the registry (vaeflow.models.MODELS)")
