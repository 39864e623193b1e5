"""Paired comparisons of models on the same test images, with intervals, and the sentences the site quotes.

Every run of a dataset is scored on the same test images in the same order (``test_scores.npz``
beside its metrics.json: per-example ``log_likelihood`` in nats, the model's reported likelihood
or bound), and so is the dataset's reference baseline (``baselines_test_scores.npz``). Two models
are therefore compared example by example (:func:`paired_comparison`):

* **pooling over seeds** – each model's score of an example is the mean over its seeds of that
  example's bits/dim, and the per-example difference is taken between the two pooled scores. Its
  mean is exactly the difference of the two models' mean test bits/dim over seeds (the numbers of
  the likelihood table), and it needs no pairing of one model's seeds with the other's;
* **interval** – a paired t-interval over the test examples (:data:`CONFIDENCE`). It measures how
  much the difference depends on which test images were drawn, for these trained networks; it
  says nothing about retraining, so
* **seed spread** – the sd over seeds of each model's per-seed mean test bits/dim, and the range
  of the differences of per-seed means (every seed of one model against every seed of the other),
  stand beside it;
* **within noise** – a difference is within noise when its interval contains 0 **or** it is
  smaller in size than the seed spread (the larger of the two models' seed sds; with one seed per
  model there is no seed spread and only the interval decides).

From these, per dataset (:func:`comparison_sentences`): the ranking by mean test bits/dim, the best
model, the best VAE against the best flow, the VAE against the best exact flow, the pairs of
:data:`PAIRS` and every model against the reference baseline, each a sentence with its interval; the
dataset's parameter budget (matched capacity) where the config set one; and a warning after any
comparison that involves a run stopped by its step ceiling rather than by early stopping, since only
converged runs support a conclusion. The site quotes these sentences instead of hand-written
directions, so no page states a ranking that the results do not support.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from vaeflow.analysis.figures import DASH, NBSP, Shown, sig
from vaeflow.models import registry

#: the coverage of every interval this module reports
CONFIDENCE = 0.95
#: the VAE family (the models whose latent is a VAE's); every other model of the study is a normalizing flow
VAE_FAMILY = tuple(name for name, card in registry().items() if card.latent_kind == "vae")
#: how a model or dataset is named in a sentence (its class's ``prose_name``; ids missing here as they are)
MODEL_NAMES = {name: card.prose_name for name, card in registry().items()}
DATASET_NAMES = {
    "mnist": "MNIST",
    "digits": "the 8×8 digits",
    "textures": "the textures",
    "toy2d": "the 2-D data",
    "mnist_full": "full MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
}
#: the comparisons listed per dataset, in this order: neighbours in the ranking (best first), the best VAE against
#: the best flow, the VAE against the best exact flow, the pairs of :data:`PAIRS`, every model against the baseline
NEIGHBOURS, FAMILIES, VAE_VS_EXACT, PAIR, BASELINE = (
    "neighbours in the ranking",
    "best VAE vs best flow",
    "VAE vs best exact flow",
    "named pair",
    "vs reference baseline",
)
KINDS = (NEIGHBOURS, FAMILIES, VAE_VS_EXACT, PAIR, BASELINE)
#: pairs the discussion asks about, compared wherever both were trained: the posterior flow against the plain VAE,
#: Flow++ and FFJORD against the coupling flows, the IAF against the MAF (its mirror image, or its teacher)
PAIRS = (("vae_iaf", "vae"), ("flowpp", "realnvp"), ("flowpp", "glow"), ("ffjord", "realnvp"), ("iaf", "maf"))


def model_name(model: str) -> str:
    """A model as a sentence names it (``"the VAE"``, ``"Real NVP"``)."""
    return MODEL_NAMES.get(model, model)


def dataset_name(dataset: str) -> str:
    """A dataset as a sentence names it (``"MNIST"``, ``"the 2-D data"``)."""
    return DATASET_NAMES.get(dataset, dataset)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _num(value: float, digits: int = 3) -> str:
    """A number for prose: fixed decimals, a true minus sign."""
    return f"{value:.{digits}f}".replace("-", "−")


def _interval(low: float, high: float) -> str:
    """``0.030–0.050`` when both ends are non-negative, else ``−0.020 to 0.030`` (a dash by a minus misreads)."""
    return f"{_num(low)}–{_num(high)}" if low >= 0 and high >= 0 else f"{_num(low)} to {_num(high)}"


@dataclass(frozen=True)
class ExampleScores:
    """Per-example test bits/dim of one model (or baseline) on one dataset: ``bpd[i, j]`` is seed
    ``seeds[i]`` on test example ``j``; a baseline has one row and no seed (``seeds == (None,)``)."""

    bpd: np.ndarray
    seeds: tuple[int | None, ...]

    @property
    def per_seed(self) -> np.ndarray:
        """Each seed's mean test bits/dim."""
        return self.bpd.mean(axis=1)

    @property
    def pooled(self) -> np.ndarray:
        """Each example's bits/dim averaged over the seeds."""
        return self.bpd.mean(axis=0)


def _bpd(nats: np.ndarray, num_dims: int) -> np.ndarray:
    return -np.asarray(nats, dtype=np.float64) / (num_dims * math.log(2))


def _read_scores(path: str | Path, key: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(scores[key], labels or None)`` of one .npz, checked finite."""
    with np.load(path, allow_pickle=False) as found:
        if key not in found.files:
            raise ValueError(
                f"{path} has no {key!r} array (it has {', '.join(found.files)}); rerun the job that wrote it"
            )
        values = np.asarray(found[key], dtype=np.float64)
        labels = np.asarray(found["labels"]) if "labels" in found.files else None
    if values.ndim != 1 or not np.isfinite(values).all():
        raise ValueError(
            f"{path}: {key!r} must be a finite 1-D array of per-example log-likelihoods; rerun the job that wrote it"
        )
    return values, labels


def _check_same_examples(dataset: str, where: dict[str, tuple[int, np.ndarray | None]]) -> None:
    """Every score file of a dataset must hold the same test examples (count and labels)."""
    (first, (n, labels)), *rest = where.items()
    for path, (m, other) in rest:
        same_labels = labels is None or other is None or np.array_equal(labels, other)
        if m != n or not same_labels:
            raise ValueError(
                f"{dataset}: {path} scores {m} test examples{'' if same_labels else ' with other labels'} "
                f"but {first} scores {n}; every run of a dataset must be scored on the same test images "
                "in the same order: rerun the evaluation of the stale one"
            )


def load_example_scores(runs: pd.DataFrame, baselines: pd.DataFrame) -> dict[str, dict[str, ExampleScores]]:
    """Per dataset, per model: the per-example test bits/dim of every run (``runs["scores"]``, one row per
    seed, seeds ascending), plus the dataset's reference baseline under the key ``"baseline"``.

    Checks that every file of a dataset scores the same test examples (same count, same labels), since
    the comparisons pair them example by example.
    """
    references = baselines[baselines["reference"]].set_index("dataset")
    out: dict[str, dict[str, ExampleScores]] = {}
    for dataset, of_dataset in runs.groupby("dataset", sort=True):
        if dataset not in references.index:
            raise ValueError(
                f"no reference baseline for {dataset}: add results/{dataset}/baselines.json to the "
                "likelihood analysis's `baselines`"
            )
        seen: dict[str, tuple[int, np.ndarray | None]] = {}
        models: dict[str, ExampleScores] = {}
        for model, group in of_dataset.groupby("model", sort=True):
            rows, seeds = [], []
            for run in group.sort_values("seed").itertuples(index=False):
                nats, labels = _read_scores(run.scores, "log_likelihood")
                seen[str(run.scores)] = (len(nats), labels)
                _check_same_examples(dataset, seen)
                rows.append(_bpd(nats, int(run.num_dims)))
                seeds.append(int(run.seed))
            models[model] = ExampleScores(np.vstack(rows), tuple(seeds))
        reference = references.loc[dataset]
        nats, labels = _read_scores(reference["scores"], reference["baseline"])
        seen[str(reference["scores"])] = (len(nats), labels)
        _check_same_examples(dataset, seen)
        models["baseline"] = ExampleScores(_bpd(nats, int(reference["num_dims"]))[None, :], (None,))
        out[dataset] = models
    return out


@dataclass(frozen=True)
class Comparison:
    """A against B on the same test examples; ``difference`` is A − B in bits/dim (negative: A is better)."""

    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    examples: int
    seed_sd_a: float  # NaN with one seed
    seed_sd_b: float
    seed_spread: float  # the larger seed sd; NaN when neither model has two seeds
    seed_diff_min: float  # the range of (per-seed mean of A) − (per-seed mean of B) over every pair of seeds
    seed_diff_max: float
    interval_has_zero: bool
    below_seed_spread: bool

    @property
    def within_noise(self) -> bool:
        """The interval contains 0, or the difference is smaller than the seed spread."""
        return self.interval_has_zero or self.below_seed_spread


def _seed_sd(scores: ExampleScores) -> float:
    return float(np.std(scores.per_seed, ddof=1)) if len(scores.seeds) > 1 else math.nan


def paired_comparison(a: ExampleScores, b: ExampleScores, confidence: float = CONFIDENCE) -> Comparison:
    """Compare A with B on the same test examples (module docstring: pooling, interval, noise rule).

    The per-example difference ``d_j`` is A's bits/dim of example ``j`` averaged over A's seeds minus
    B's averaged over B's seeds; the interval is ``mean(d) ± t_{(1+confidence)/2, n−1} · sd(d) / √n``.
    The difference is *within noise* when that interval contains 0 or ``|mean(d)|`` is smaller than
    the seed spread, the larger of the two sds over seeds of the per-seed mean bits/dim.
    """
    if a.bpd.shape[1] != b.bpd.shape[1]:
        raise ValueError(
            f"paired comparison of {a.bpd.shape[1]} test examples with {b.bpd.shape[1]}: both sides must "
            "be scored on the same test images"
        )
    d = a.pooled - b.pooled
    n = len(d)
    if n < 2:
        raise ValueError(f"a paired interval needs at least 2 test examples, got {n}")
    mean = float(d.mean())
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    sd_a, sd_b = _seed_sd(a), _seed_sd(b)
    spread = max((s for s in (sd_a, sd_b) if not math.isnan(s)), default=math.nan)
    per_seed = [x - y for x, y in itertools.product(a.per_seed, b.per_seed)]
    low, high = mean - half, mean + half
    return Comparison(
        mean_a=float(a.bpd.mean()),
        mean_b=float(b.bpd.mean()),
        difference=mean,
        ci_low=low,
        ci_high=high,
        examples=n,
        seed_sd_a=sd_a,
        seed_sd_b=sd_b,
        seed_spread=spread,
        seed_diff_min=float(min(per_seed)),
        seed_diff_max=float(max(per_seed)),
        interval_has_zero=bool(low <= 0 <= high),
        below_seed_spread=bool(abs(mean) < spread),
    )


def ranking(scores: dict[str, ExampleScores]) -> list[str]:
    """The models of one dataset (the baseline left out) by mean test bits/dim over seeds, best (lowest) first."""
    return sorted((m for m in scores if m != "baseline"), key=lambda m: (float(scores[m].bpd.mean()), m))


def _best_of(order: list[str], family: bool) -> str | None:
    """The best-ranked VAE (``family=True``) or flow (``False``) in ``order``, or None."""
    return next((m for m in order if (m in VAE_FAMILY) == family), None)


def compare_dataset(dataset: str, scores: dict[str, ExampleScores], exact: set[str]) -> pd.DataFrame:
    """The comparisons of one dataset, one row each (``kind`` from :data:`KINDS`, ``a``, ``b`` and the fields of
    :class:`Comparison`): every pair of neighbours in the ranking (the best against the runner-up first), the
    best VAE against the best flow, the VAE against the best of the ``exact`` models, the :data:`PAIRS` of
    models both trained, and every model against the reference baseline (``b == "baseline"``)."""
    order = ranking(scores)
    pairs = [(NEIGHBOURS, a, b) for a, b in itertools.pairwise(order)]
    vae, flow = _best_of(order, True), _best_of(order, False)
    if vae and flow:
        pairs.append((FAMILIES, vae, flow))
    best_exact = next((m for m in order if m in exact and m not in VAE_FAMILY), None)
    if "vae" in order and best_exact:
        pairs.append((VAE_VS_EXACT, "vae", best_exact))
    pairs += [(PAIR, a, b) for a, b in PAIRS if a in order and b in order]
    pairs += [(BASELINE, model, "baseline") for model in order]
    rows = []
    for kind, a, b in pairs:
        found = paired_comparison(scores[a], scores[b])
        rows.append(
            {"dataset": dataset, "kind": kind, "a": a, "b": b, **vars(found), "within_noise": found.within_noise}
        )
    return pd.DataFrame(rows)


def compare_all(scores: dict[str, dict[str, ExampleScores]], runs: pd.DataFrame) -> pd.DataFrame:
    """:func:`compare_dataset` for every dataset, concatenated; a model is exact on a dataset where every run of it
    reports an exact likelihood (``runs["exact"]``)."""
    exact = runs.groupby(["dataset", "model"])["exact"].all()
    return pd.concat(
        [
            compare_dataset(d, s, {m for (e, m), is_exact in exact.items() if e == d and is_exact})
            for d, s in sorted(scores.items())
        ],
        ignore_index=True,
    )


def budgets(runs: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per dataset: the stated parameter budget (``None`` without one) and the smallest and largest parameter
    count of its models. Every run of a dataset must have been trained under the same budget."""
    out = {}
    for dataset, group in runs.groupby("dataset", sort=True):
        stated = group["parameter_budget"].astype(float)
        if stated.isna().any() and stated.notna().any() or stated.nunique() > 1:
            raise ValueError(
                f"the runs of {dataset} were trained under different parameter budgets "
                f"({sorted(set(stated.fillna(0).astype(int)))}; 0: none): retrain the stale ones "
                "so that the comparison is at matched capacity"
            )
        per_model = group.groupby("model")["parameters"].first()
        out[dataset] = {
            "budget": None if stated.isna().all() else int(stated.iloc[0]),
            "smallest": int(per_model.min()),
            "largest": int(per_model.max()),
            "smallest_model": str(per_model.idxmin()),
            "largest_model": str(per_model.idxmax()),
        }
    return out


def _counts(budget: dict[str, Any]) -> str:
    """``"1,000"`` or ``"1,000 to 2,000"``: the parameter counts of a dataset's models."""
    low, high = budget["smallest"], budget["largest"]
    return f"{low:,}" if low == high else f"{low:,} to {high:,}"


def budget_sentence(dataset: str, budget: dict[str, Any]) -> str:
    """Whether the models of a dataset were compared at matched capacity, with their parameter counts."""
    if budget["budget"] is not None:
        return (
            f"On {dataset_name(dataset)} every model was sized to a budget of {budget['budget']:,} parameters "
            f"(actual counts {_counts(budget)})."
        )
    if budget["smallest"] == budget["largest"]:
        return (
            f"{_capital(dataset_name(dataset))} has no parameter budget, though its models all have "
            f"{budget['smallest']:,} parameters."
        )
    return (
        f"{_capital(dataset_name(dataset))} has no parameter budget: its models range from {budget['smallest']:,} "
        f"({model_name(budget['smallest_model'])}) to {budget['largest']:,} parameters "
        f"({model_name(budget['largest_model'])}), so its comparisons are between models of unequal size."
    )


def _opening(dataset: str, budget: dict[str, Any]) -> str:
    """``On MNIST at a budget of 100,000 parameters,`` (the budget only where the config set one)."""
    at = f" at a budget of {budget['budget']:,} parameters" if budget["budget"] is not None else ""
    return f"On {dataset_name(dataset)}{at},"


def _seed_clause(row: Any) -> str:
    if math.isnan(row.seed_spread):
        return "; one seed, so no seed spread" if "baseline" in (row.a, row.b) else "; one seed each, so no seed spread"
    return f"; seed sd {'up to ' if 'baseline' not in (row.a, row.b) else ''}{_num(row.seed_spread)}"


@dataclass(frozen=True)
class _Said:
    """One comparison arranged for a sentence: the better side first (``first``, ``second``: names), their mean
    bits/dim, the gap and the interval of second − first, and the seed clause."""

    first: str
    second: str
    first_bpd: str
    second_bpd: str
    gap: str
    interval: str
    seeds: str
    within_noise: bool
    why: str


def _said(row: Any, baseline_label: str) -> _Said:
    def name(model: str) -> str:
        return f"the {baseline_label} baseline" if model == "baseline" else model_name(model)

    flip = row.difference > 0  # B is better: it is said first
    first, second = (row.b, row.a) if flip else (row.a, row.b)
    first_bpd, second_bpd = (row.mean_b, row.mean_a) if flip else (row.mean_a, row.mean_b)
    low, high = (row.ci_low, row.ci_high) if flip else (-row.ci_high, -row.ci_low)  # the interval of second − first
    why = "the interval contains 0" if row.interval_has_zero else "the difference is below the seed spread"
    return _Said(
        name(first),
        name(second),
        _num(first_bpd),
        _num(second_bpd),
        _num(abs(row.difference)),
        f"{CONFIDENCE:.0%} CI {_interval(low, high)}",
        _seed_clause(row),
        bool(row.within_noise),
        why,
    )


def comparison_sentence(row: Any, baseline_label: str = "reference") -> str:
    """One comparison (a row of :func:`compare_dataset`) in words, the better side first, no opening, no full stop:
    ``"Flow++ (2.410 bits/dim) beats the VAE (2.450) by 0.040 bits/dim (95% CI 0.030–0.050; seed sd up to 0.010)"``
    or ``"… and … are within noise (difference 0.010, 95% CI −0.020 to 0.030; …: the interval contains 0)"``.
    ``baseline_label`` names the reference baseline (``"the independent pixels baseline"``)."""
    s = _said(row, baseline_label)
    if s.within_noise:
        return (
            f"{s.first} ({s.first_bpd} bits/dim) and {s.second} ({s.second_bpd}) are within noise "
            f"(difference {s.gap}, {s.interval}{s.seeds}: {s.why})"
        )
    return (
        f"{s.first} ({s.first_bpd} bits/dim) beats {s.second} ({s.second_bpd}) by {s.gap} bits/dim "
        f"({s.interval}{s.seeds})"
    )


def _not_converged(runs: pd.DataFrame, dataset: str, models: list[str]) -> str:
    """``""``, or a sentence naming the runs of ``models`` on ``dataset`` that the step ceiling stopped."""
    stopped = runs[(runs["dataset"] == dataset) & runs["model"].isin(models) & ~runs["converged"].astype(bool)]
    if stopped.empty:
        return ""
    named = ", ".join(
        f"{model_name(r.model)} seed {r.seed} ({r.steps:,} steps)" for r in stopped.itertuples(index=False)
    )
    return f" Provisional: {named} stopped at the step ceiling, still improving, not by early stopping."


def ranking_sentence(dataset: str, rows: pd.DataFrame, budget: dict[str, Any]) -> str:
    """The models of one dataset from best to worst by mean test bits/dim, ``≈`` between neighbours within noise
    and ``<`` where the better one's lead is beyond noise."""
    neighbours = rows[rows["kind"] == NEIGHBOURS]
    if neighbours.empty:
        only = rows[rows["kind"] == BASELINE].iloc[0]
        return f"{_opening(dataset, budget)} only {model_name(only.a)} was trained ({_num(only.mean_a)} bits/dim)."
    chain = f"{model_name(neighbours.iloc[0].a)} {_num(neighbours.iloc[0].mean_a)}"
    for row in neighbours.itertuples(index=False):
        chain += f" {'≈' if row.within_noise else '<'} {model_name(row.b)} {_num(row.mean_b)}"
    return (
        f"{_opening(dataset, budget)} the models rank by mean test bits/dim (lower is better) as {chain} "
        "(≈: within noise of the next; <: ahead beyond noise)."
    )


def best_sentence(dataset: str, rows: pd.DataFrame, budget: dict[str, Any], baseline_label: str) -> str:
    """The best model of a dataset against the runner-up, or that none is best when the two are within noise."""
    neighbours = rows[rows["kind"] == NEIGHBOURS]
    if neighbours.empty:
        return ranking_sentence(dataset, rows, budget)
    s = _said(neighbours.iloc[0], baseline_label)
    if s.within_noise:
        return (
            f"{_opening(dataset, budget)} no single model is best: {s.first} ({s.first_bpd} bits/dim) and the "
            f"runner-up, {s.second} ({s.second_bpd}), are within noise (difference {s.gap}, {s.interval}{s.seeds}: "
            f"{s.why})."
        )
    return (
        f"{_opening(dataset, budget)} the best model is {s.first} ({s.first_bpd} bits/dim): it beats the "
        f"runner-up, {s.second} ({s.second_bpd}), by {s.gap} bits/dim ({s.interval}{s.seeds})."
    )


def family_sentence(dataset: str, rows: pd.DataFrame, budget: dict[str, Any], baseline_label: str) -> str:
    """The best VAE against the best flow of a dataset (or which family is missing)."""
    found = rows[rows["kind"] == FAMILIES]
    if found.empty:
        missing = "VAE" if not any(m in VAE_FAMILY for m in rows["a"]) else "flow"
        return f"{_opening(dataset, budget)} no {missing} was trained, so the two families are not compared."
    return (
        f"{_opening(dataset, budget)} best VAE against best flow: {comparison_sentence(found.iloc[0], baseline_label)}."
    )


def pair_sentence(
    dataset: str, rows: pd.DataFrame, kind: str, a: str, b: str | None, budget: dict[str, Any], baseline_label: str
) -> str:
    """The comparison of ``kind`` between ``a`` and ``b`` on one dataset, or why there is none (one of them was
    not trained)."""
    found = rows[(rows["kind"] == kind) & (rows["a"] == a) & (rows["b"] == b)] if b else rows.iloc[:0]
    if found.empty:
        rival = model_name(b) if b else "an exact flow"
        return (
            f"{_opening(dataset, budget)} {model_name(a)} and {rival} were not both trained, so they are not compared."
        )
    return f"{_opening(dataset, budget)} {comparison_sentence(found.iloc[0], baseline_label)}."


def budgets_sentence(sizes: dict[str, dict[str, Any]]) -> str:
    """The parameter budgets of every dataset in one sentence: which datasets compare models at matched capacity,
    and how far apart in size the models of the others are."""
    matched = [
        f"{dataset_name(d)} {b['budget']:,} (actual counts {_counts(b)})"
        for d, b in sizes.items()
        if b["budget"] is not None
    ]
    unmatched = [
        f"{dataset_name(d)} {_counts(b)}"
        + (
            f" ({model_name(b['smallest_model'])} to {model_name(b['largest_model'])})"
            if b["smallest"] != b["largest"]
            else ""
        )
        for d, b in sizes.items()
        if b["budget"] is None
    ]
    said = []
    if matched:
        said.append(
            f"every model was sized to its dataset's parameter budget on {len(matched)} of {len(sizes)} "
            f"datasets: {'; '.join(matched)}."
        )
    if unmatched:
        opening = "Without a budget," if matched else "No dataset has a parameter budget;"
        said.append(f"{opening} the models' parameter counts are: {'; '.join(unmatched)}.")
    return _capital(" ".join(said))


def baseline_sentence(dataset: str, row: Any, budget: dict[str, Any], baseline_label: str) -> str:
    """One model of a dataset against the dataset's reference baseline."""
    return f"{_opening(dataset, budget)} {comparison_sentence(row, baseline_label)}."


def _against_baseline(row: Any, baseline_label: str) -> str:
    """``"Flow++ (2.539) beats it by 0.447 (95% CI …)"``: one model against the baseline, for a list."""
    s = _said(row, baseline_label)
    name, bpd = model_name(row.a), _num(row.mean_a)
    if s.within_noise:
        return f"{name} ({bpd}) is within noise of it (difference {s.gap}, {s.interval}{s.seeds}: {s.why})"
    verb = "beats it" if row.difference < 0 else "is worse"
    return f"{name} ({bpd}) {verb} by {s.gap} ({s.interval}{s.seeds})"


def baselines_sentence(dataset: str, rows: pd.DataFrame, budget: dict[str, Any], baseline_label: str) -> str:
    """Every model of a dataset against the dataset's reference baseline, best first, in one sentence."""
    against = rows[rows["kind"] == BASELINE]
    listed = "; ".join(_against_baseline(row, baseline_label) for row in against.itertuples(index=False))
    return (
        f"{_opening(dataset, budget)} against the {baseline_label} baseline ({_num(against.iloc[0].mean_b)} "
        f"bits/dim), in bits/dim: {listed}."
    )


def comparison_sentences(runs: pd.DataFrame, comparisons: pd.DataFrame, baselines: pd.DataFrame) -> dict[str, Any]:
    """The sentences the site quotes, under ``compare``: ``budgets`` (:func:`budgets_sentence`) and per dataset
    ``budget`` (the stated parameter budget, or ``"none"``), ``budget_sentence``, ``ranking``, ``best`` (and
    ``best_model``), ``families`` (best VAE vs best flow), ``vae_vs_best_exact``, ``pairs`` (one per :data:`PAIRS`,
    keyed ``"<a>_vs_<b>"``), ``vs_baseline`` (every model against the reference baseline, one paragraph) and
    ``vs_baseline_by_model``. Each comparative sentence is followed by one naming the runs behind it that the
    step ceiling stopped (:func:`_not_converged`), if any: those comparisons are provisional."""
    references = baselines[baselines["reference"]].set_index("dataset")["label"]
    sizes = budgets(runs)
    out: dict[str, Any] = {"budgets": budgets_sentence(sizes)}
    for dataset, rows in comparisons.groupby("dataset", sort=True):
        budget, label = sizes[dataset], str(references[dataset])
        against_baseline = rows[rows["kind"] == BASELINE]
        order = list(against_baseline["a"])  # the ranking, best first
        neighbours = rows[rows["kind"] == NEIGHBOURS]
        top = list(neighbours.iloc[0][["a", "b"]]) if len(neighbours) else order[:1]
        families = rows.loc[rows["kind"] == FAMILIES, ["a", "b"]]
        pair = list(families.iloc[0]) if len(families) else []
        by_model = {
            row.a: baseline_sentence(dataset, row, budget, label) + _not_converged(runs, dataset, [row.a])
            for row in against_baseline.itertuples(index=False)
        }
        exact = rows.loc[rows["kind"] == VAE_VS_EXACT, "b"]
        best_exact = exact.iloc[0] if len(exact) else None
        out[dataset] = {
            "budget": f"{budget['budget']:,}" if budget["budget"] is not None else "none",
            "budget_sentence": budget_sentence(dataset, budget),
            "ranking": ranking_sentence(dataset, rows, budget) + _not_converged(runs, dataset, order),
            "best": best_sentence(dataset, rows, budget, label) + _not_converged(runs, dataset, top),
            "best_model": order[0],
            "families": family_sentence(dataset, rows, budget, label) + _not_converged(runs, dataset, pair),
            "vae_vs_best_exact": (
                pair_sentence(dataset, rows, VAE_VS_EXACT, "vae", best_exact, budget, label)
                + _not_converged(runs, dataset, ["vae", best_exact])
            ),
            "pairs": {
                f"{a}_vs_{b}": pair_sentence(dataset, rows, PAIR, a, b, budget, label)
                + _not_converged(runs, dataset, [a, b])
                for a, b in PAIRS
            },
            "vs_baseline": baselines_sentence(dataset, rows, budget, label) + _not_converged(runs, dataset, order),
            "vs_baseline_by_model": by_model,
        }
    return {"compare": out}


def comparisons_table(comparisons: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """The comparisons as the site shows them: A, B, their mean test bits/dim, A − B with its interval, the seed
    sds and the range of per-seed differences, and the verdict."""
    references = baselines[baselines["reference"]].set_index("dataset")["label"]
    rows = []
    for row in comparisons.itertuples(index=False):
        b = f"{references[row.dataset]} (baseline)" if row.b == "baseline" else row.b
        verdict = "within noise" if row.within_noise else (f"{row.a} better" if row.difference < 0 else f"{b} better")
        rows.append(
            {
                "dataset": row.dataset,
                "comparison": row.kind,
                "A": row.a,
                "B": b,
                "A bits/dim": f"{row.mean_a:.3f}",
                "B bits/dim": f"{row.mean_b:.3f}",
                "A − B (bits/dim)": f"{row.difference:+.3f}",
                f"{CONFIDENCE:.0%} CI": f"{row.ci_low:+.3f} to {row.ci_high:+.3f}",
                "seed sd A": "–" if math.isnan(row.seed_sd_a) else f"{row.seed_sd_a:.3f}",
                "seed sd B": "–" if math.isnan(row.seed_sd_b) else f"{row.seed_sd_b:.3f}",
                "per-seed A − B": (
                    f"{row.seed_diff_min:+.3f}"
                    if row.seed_diff_min == row.seed_diff_max
                    else f"{row.seed_diff_min:+.3f} to {row.seed_diff_max:+.3f}"
                ),
                "test examples": int(row.examples),
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


#: the kinds of comparison in few words, for the site's table (its legend spells them out)
SHORT_KINDS = {
    NEIGHBOURS: "neighbours",
    FAMILIES: "VAE vs flow",
    VAE_VS_EXACT: "VAE vs exact flow",
    PAIR: "named pair",
    BASELINE: "vs baseline",
}


def comparisons_shown(comparisons: pd.DataFrame, baselines: pd.DataFrame) -> Shown:
    """The comparisons as the site shows them, compactly: A − B with its interval, the seed sds of A and B in one
    cell, the range of per-seed differences and the verdict, to 3 significant figures; the models' own mean test
    bits/dim are the likelihood table's, and the number of test examples per dataset is in the legend."""
    table = comparisons_table(comparisons, baselines)
    rows = []
    for row, shown in zip(comparisons.itertuples(index=False), table.itertuples(index=False)):
        sds = [DASH if math.isnan(v) else sig(v) for v in (row.seed_sd_a, row.seed_sd_b)]
        verdict = shown.verdict.replace(shown.B, "baseline") if row.b == "baseline" else shown.verdict
        rows.append(
            {
                "dataset": row.dataset,
                "comparison": SHORT_KINDS.get(row.kind, row.kind).replace(" ", NBSP),
                "A": row.a,
                "B": row.b,
                "A − B": sig(row.difference, sign=True),
                f"{CONFIDENCE:.0%} CI": f"{sig(row.ci_low, sign=True)} to {sig(row.ci_high, sign=True)}",
                "seed sd A / B": DASH if sds == [DASH, DASH] else f"{sds[0]} / {sds[1]}",
                "per-seed A − B": (
                    sig(row.seed_diff_min, sign=True)
                    if row.seed_diff_min == row.seed_diff_max
                    else f"{sig(row.seed_diff_min, sign=True)} to {sig(row.seed_diff_max, sign=True)}"
                ),
                "verdict": verdict.replace(" ", NBSP),  # one line
            }
        )
    examples = comparisons.groupby("dataset")["examples"].max()
    table = pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "comparison",
            "A",
            "B",
            "A − B",
            f"{CONFIDENCE:.0%} CI",
            "seed sd A / B",
            "per-seed A − B",
            "verdict",
        ],
    )
    one_seed = (table["seed sd A / B"] == DASH).all()
    if one_seed:  # no seed spread anywhere: the per-seed difference is A − B itself
        table = table.drop(columns=["seed sd A / B", "per-seed A − B"])
    spread = (
        "Every model has one seed here, so there is no seed spread and the verdict rests on the interval. "
        if one_seed
        else "*seed sd*: the sd over seeds of each model's mean test bits/dim (– with one seed); "
        "*per-seed A − B*: the range of the differences of per-seed means. "
    )
    notes = [
        f"*A − B*: the difference of the two models' mean test bits/dim (negative: A is better), with its "
        f"{CONFIDENCE:.0%} paired t-interval over the test examples ("
        + ", ".join(f"{int(n):,} on {d}" for d, n in examples.items())
        + "). "
        + spread
        + "The models' own test bits/dim are in the likelihood table and in the CSV.",
        "Comparisons: "
        + "; ".join(
            f"*{short}*: {kind}"
            for kind, short in SHORT_KINDS.items()
            if kind in set(comparisons["kind"]) and short != kind
        )
        + ".",
    ]
    references = baselines[baselines["reference"] & baselines["dataset"].isin(set(comparisons["dataset"]))]
    if (comparisons["b"] == "baseline").any() and len(references):
        where = references.groupby("label", sort=False)["dataset"].apply(lambda d: ", ".join(sorted(d)))
        notes.append(
            "*baseline*: the dataset's reference baseline ("
            + "; ".join(f"{label} on {datasets}" for label, datasets in where.items())
            + ")."
        )
    return Shown(table, notes)
