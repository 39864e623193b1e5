"""Paired comparisons and the sentences the site quotes, on small synthetic scores (no trained models)."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vaeflow.analysis import comparisons, likelihood
from vaeflow.analysis.comparisons import ExampleScores, paired_comparison


def _scores(rows) -> ExampleScores:
    rows = np.atleast_2d(np.asarray(rows, dtype=float))
    return ExampleScores(rows, tuple(range(len(rows))))


def test_interval_equals_the_t_interval_computed_by_hand() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(3.0, 0.4, (2, 40)), rng.normal(3.1, 0.4, (3, 40))  # two seeds against three
    found = paired_comparison(_scores(a), _scores(b))
    d = [sum(a[:, j]) / 2 - sum(b[:, j]) / 3 for j in range(40)]  # each example pooled over each model's seeds
    mean = sum(d) / 40
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 39)
    half = stats.t.ppf(0.975, 39) * sd / math.sqrt(40)
    assert found.difference == pytest.approx(mean) == pytest.approx(a.mean() - b.mean())
    assert (found.ci_low, found.ci_high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    # scipy's own paired t-test gives the same interval
    scipy_interval = stats.ttest_rel(a.mean(0), b.mean(0)).confidence_interval()
    assert (found.ci_low, found.ci_high) == pytest.approx(tuple(scipy_interval))
    seed_means_a, seed_means_b = a.mean(1), b.mean(1)
    assert found.seed_sd_a == pytest.approx(abs(seed_means_a[0] - seed_means_a[1]) / math.sqrt(2))
    assert found.seed_sd_b == pytest.approx(np.std(seed_means_b, ddof=1))
    assert found.seed_spread == max(found.seed_sd_a, found.seed_sd_b)
    every = [x - y for x in seed_means_a for y in seed_means_b]
    assert (found.seed_diff_min, found.seed_diff_max) == (pytest.approx(min(every)), pytest.approx(max(every)))
    assert found.examples == 40


def test_interval_covers_a_known_difference_about_95_times_in_100() -> None:
    rng = np.random.default_rng(1)
    true = 0.05
    covered = 0
    for _ in range(400):
        x = rng.normal(2.0, 0.3, 30)  # the images' shared difficulty: the pairing removes it
        a, b = x + true + rng.normal(0, 0.1, 30), x + rng.normal(0, 0.1, 30)
        found = paired_comparison(_scores(a), _scores(b))
        covered += found.ci_low <= true <= found.ci_high
    assert 0.92 <= covered / 400 <= 0.98  # binomial sd of the coverage over 400 draws: 0.011


def test_within_noise_by_the_interval_by_the_seed_spread_and_not() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(3.0, 0.5, 200)
    clear = paired_comparison(_scores([x - 0.1, x - 0.1]), _scores([x, x]))  # 0.1 better on every image, every seed
    assert clear.difference == pytest.approx(-0.1) and clear.ci_high < 0 and not clear.within_noise
    assert clear.seed_spread == 0.0
    noisy = paired_comparison(_scores(x + rng.normal(0, 0.5, 200)), _scores(x + rng.normal(0, 0.5, 200)))
    assert noisy.interval_has_zero and noisy.within_noise  # the same model twice: the interval holds 0
    # a consistent 0.02 per image, but the seeds of A differ by 0.2: retraining moves it more than that
    seeds = paired_comparison(_scores([x - 0.12, x + 0.08]), _scores([x, x]))
    assert seeds.ci_high < 0 and not seeds.interval_has_zero
    assert seeds.below_seed_spread and seeds.within_noise and seeds.seed_spread == pytest.approx(0.2 / math.sqrt(2))
    single = paired_comparison(_scores(x - 0.1), _scores(x))  # one seed each: only the interval decides
    assert math.isnan(single.seed_spread) and not single.below_seed_spread and not single.within_noise


def test_comparisons_refuse_different_test_examples() -> None:
    with pytest.raises(ValueError, match="same test images"):
        paired_comparison(_scores(np.zeros(5)), _scores(np.zeros(6)))


# --- a synthetic study on disk: runs, their scores and the reference baseline ---------------------------

DIMS = 4
N = 300


def _nats(bpd: np.ndarray) -> np.ndarray:
    return -np.asarray(bpd) * DIMS * math.log(2)


def _write_run(
    root, dataset, model, seed, bpd, *, converged=True, steps=80, ceiling=100, parameters=1000, budget=None, labels=None
):
    """results/<dataset>/<model>/seed<N>/ with the metrics.json, train.json and test_scores.npz load_runs reads."""
    folder = root / dataset / model / f"seed{seed}"
    folder.mkdir(parents=True)
    scores = {"log_likelihood": _nats(bpd), **({"labels": labels} if labels is not None else {})}
    np.savez(folder / "test_scores.npz", **scores)
    split = {"bits_per_dim": float(np.mean(bpd))}
    metrics = {
        "dataset": dataset,
        "model": model,
        "seed": seed,
        "exact": model not in ("vae", "vae_iaf"),
        "test": {**split, "bound": "exact"},
        "val": split,
        "train": split,
        "parameters": parameters,
        "steps": steps,
        "best_step": steps - 10,
        "converged": converged,
        "stopped_by": "patience" if converged else "ceiling",
        "trained_by": "maximum likelihood",
        "throughput": {"samples_per_s": 1.0, "density_evals_per_s": 1.0},
        "num_dims": DIMS,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    run = {"training": {"steps": ceiling}, **({"parameter_budget": budget} if budget else {})}
    (folder / "train.json").write_text(json.dumps({"run": run}))
    return folder / "metrics.json"


def _write_baseline(root, dataset, bpd, labels=None):
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / "baselines_test_scores.npz",
        independent_pixels=_nats(bpd),
        **({"labels": labels} if labels is not None else {}),
    )
    split = float(np.mean(bpd))
    found = {
        "dataset": dataset,
        "levels": 17,
        "num_dims": DIMS,
        "test_scores": "baselines_test_scores.npz",
        "baselines": [
            {
                "name": "independent_pixels",
                "label": "independent pixels",
                "quantity": "exact",
                "parameters": 64,
                "reference": True,
                "bits_per_dim": {"train": split, "val": split, "test": split},
            }
        ],
    }
    (folder / "baselines.json").write_text(json.dumps(found))
    return folder / "baselines.json"


@pytest.fixture
def study(tmp_path):
    """MNIST at a budget of 1,000 parameters: Flow++ clearly best, the VAE and the VAE-IAF level (within noise),
    Real NVP last, one VAE seed stopped by its ceiling; the digits without a budget, one model of each family."""
    rng = np.random.default_rng(3)
    x = rng.normal(3.0, 0.5, N)  # per-image difficulty, shared by every model of the dataset
    labels = np.arange(N) % 10
    shifts = {"flowpp": -0.50, "vae": -0.40, "vae_iaf": -0.40, "realnvp": -0.20}
    metrics = []
    for model, shift in shifts.items():
        for seed in (0, 1):
            bpd = x + shift + 0.004 * seed + rng.normal(0, 0.05, N)
            stopped = model == "vae" and seed == 1
            metrics.append(
                _write_run(
                    tmp_path,
                    "mnist",
                    model,
                    seed,
                    bpd,
                    converged=not stopped,
                    steps=100 if stopped else 80,
                    parameters=990 + 10 * len(model),
                    budget=1000,
                    labels=labels,
                )
            )
    y = rng.normal(2.0, 0.3, N)
    for model, shift, parameters in (("vae", -0.3, 5000), ("maf", -0.1, 20000)):
        bpd = y + shift + rng.normal(0, 0.05, N)
        metrics.append(_write_run(tmp_path, "digits", model, 0, bpd, parameters=parameters))
    baselines = [_write_baseline(tmp_path, "mnist", x, labels), _write_baseline(tmp_path, "digits", y)]
    runs = likelihood.load_runs(metrics)
    sanity = likelihood.load_baselines(baselines)
    paired = comparisons.compare_all(comparisons.load_example_scores(runs, sanity), runs)
    return runs, sanity, paired


def test_load_runs_reads_convergence_ceiling_and_budget(study) -> None:
    runs, _, _ = study
    vae = runs[(runs["dataset"] == "mnist") & (runs["model"] == "vae")].set_index("seed")
    assert vae["converged"].tolist() == [True, False] and vae["stopped_by"].tolist() == ["patience", "ceiling"]
    assert vae["ceiling"].tolist() == [100, 100] and vae["parameter_budget"].tolist() == [1000, 1000]
    assert runs.loc[runs["dataset"] == "digits", "parameter_budget"].isna().all()


def test_comparisons_of_the_synthetic_study(study) -> None:
    _, _, paired = study
    mnist = paired[paired["dataset"] == "mnist"]
    neighbours = mnist[mnist["kind"] == "neighbours in the ranking"]
    assert neighbours.iloc[0]["a"] == "flowpp" and neighbours.iloc[-1]["b"] == "realnvp"
    assert {neighbours.iloc[1]["a"], neighbours.iloc[1]["b"]} == {"vae", "vae_iaf"}
    assert [r.within_noise for r in neighbours.itertuples()] == [False, True, False]  # Flow++ < VAE ≈ VAE-IAF < RNVP
    families = mnist[mnist["kind"] == "best VAE vs best flow"].iloc[0]
    assert families["b"] == "flowpp" and families["a"] in ("vae", "vae_iaf") and families["difference"] > 0
    against = mnist[mnist["kind"] == "vs reference baseline"].set_index("a")
    assert against.loc["realnvp", "difference"] == pytest.approx(-0.2, abs=0.01)
    assert (against["b"] == "baseline").all() and not against["within_noise"].any()


def test_the_site_shows_the_comparisons_compactly(study) -> None:
    from vaeflow.analysis.figures import DASH, NBSP, sig

    _, sanity, paired = study
    shown = comparisons.comparisons_shown(paired, sanity)
    full = comparisons.comparisons_table(paired, sanity)
    assert len(shown.table) == len(full)
    said = [v.replace(b, "baseline") if b.endswith("(baseline)") else v for v, b in zip(full["verdict"], full["B"])]
    assert [v.replace(NBSP, " ") for v in shown.table["verdict"]] == said
    assert list(shown.table.columns) == [
        "dataset",
        "comparison",
        "A",
        "B",
        "A − B",
        "95% CI",
        "seed sd A / B",
        "per-seed A − B",
        "verdict",
    ]
    i = int(np.flatnonzero(paired["dataset"] == "mnist")[0])  # two seeds per model: a seed sd each
    row, raw = shown.table.iloc[i], paired.iloc[i]
    assert row["A − B"] == sig(raw["difference"], sign=True)
    assert row["95% CI"] == f"{sig(raw['ci_low'], sign=True)} to {sig(raw['ci_high'], sign=True)}"
    assert row["seed sd A / B"] == f"{sig(raw['seed_sd_a'])} / {sig(raw['seed_sd_b'])}"
    assert row["per-seed A − B"] == f"{sig(raw['seed_diff_min'], sign=True)} to {sig(raw['seed_diff_max'], sign=True)}"
    digits = shown.table[shown.table["dataset"] == "digits"].iloc[0]
    assert digits["seed sd A / B"] == DASH  # one seed per model: no seed spread
    assert f"({N:,} on digits, {N:,} on mnist)" in shown.notes[0]
    against = shown.table[shown.table["comparison"] == f"vs{NBSP}baseline"]
    assert len(against) and (against["B"] == "baseline").all()
    assert {v.replace(NBSP, " ") for v in against["verdict"]} <= {"baseline better", "within noise"} | {
        f"{a} better" for a in against["A"]
    }
    assert shown.notes[-1] == "*baseline*: the dataset's reference baseline (independent pixels on digits, mnist)."
    # with one seed per model, no seed spread: its two columns would only repeat A − B
    single = comparisons.comparisons_shown(paired[paired["dataset"] == "digits"], sanity)
    assert "seed sd A / B" not in single.table.columns and "per-seed A − B" not in single.table.columns
    assert "one seed here, so there is no seed spread" in single.notes[0]
    assert "nan" not in " ".join(shown.table.astype(str).to_numpy().ravel())


def test_sentences_quote_the_intervals_the_budget_and_the_unconverged_run(study) -> None:
    runs, sanity, paired = study
    said = comparisons.comparison_sentences(runs, paired, sanity)["compare"]
    mnist, digits = said["mnist"], said["digits"]
    assert mnist["budget"] == "1,000" and digits["budget"] == "none"
    assert mnist["budget_sentence"].startswith("On MNIST every model was sized to a budget of 1,000 parameters")
    assert digits["budget_sentence"] == (
        "The 8×8 digits has no parameter budget: its models range from 5,000 "
        "(the VAE) to 20,000 parameters (MAF), so its comparisons are between "
        "models of unequal size."
    )
    row = paired[(paired["dataset"] == "mnist") & (paired["kind"] == "neighbours in the ranking")].iloc[0]
    second = comparisons.model_name(row.b)
    low, high = -row.ci_high, -row.ci_low
    assert mnist["best"].startswith(
        f"On MNIST at a budget of 1,000 parameters, the best model is Flow++ ({row.mean_a:.3f} bits/dim): it beats the "
        f"runner-up, {second} ({row.mean_b:.3f}), by {-row.difference:.3f} bits/dim (95% CI {low:.3f}–{high:.3f}; "
        f"seed sd up to {row.seed_spread:.3f})."
    )
    assert " ≈ " in mnist["ranking"] and mnist["ranking"].count(" < ") == 2
    assert mnist["ranking"].index("Flow++") < mnist["ranking"].index("Real NVP")
    # every sentence that rests on the VAE's runs names its unconverged seed; those that do not, do not
    ceiling = "Provisional: the VAE seed 1 (100 steps) stopped at the step ceiling"
    assert ceiling in mnist["ranking"] and ceiling in mnist["vs_baseline"]
    assert ceiling in mnist["vs_baseline_by_model"]["vae"]
    assert ceiling not in mnist["vs_baseline_by_model"]["flowpp"]
    assert (ceiling in mnist["best"]) == ("vae" in (row.a, row.b))
    assert "Provisional" not in " ".join(v for k, v in digits.items() if isinstance(v, str))
    assert mnist["vs_baseline"].startswith(
        "On MNIST at a budget of 1,000 parameters, against the independent pixels baseline ("
    )
    realnvp = r"; Real NVP \(2\.\d{3}\) beats it by 0\.(19|20)\d \(95% CI 0\.\d{3}–0\.\d{3}; seed sd 0\.\d{3}\)\."
    assert re.search(realnvp, mnist["vs_baseline"])
    assert digits["families"].startswith("On the 8×8 digits, best VAE against best flow: the VAE (")
    assert mnist["best_model"] == "flowpp"
    # the pairs the discussion asks about: compared where both were trained, said so where not
    assert "are within noise" in mnist["pairs"]["vae_iaf_vs_vae"] and ceiling in mnist["pairs"]["vae_iaf_vs_vae"]
    assert mnist["pairs"]["flowpp_vs_realnvp"].startswith("On MNIST at a budget of 1,000 parameters, Flow++ (")
    assert mnist["pairs"]["iaf_vs_maf"] == (
        "On MNIST at a budget of 1,000 parameters, IAF and MAF were not both trained, so they are not compared."
    )
    assert digits["vae_vs_best_exact"].startswith("On the 8×8 digits, the VAE (")
    assert "beats MAF" in digits["vae_vs_best_exact"]
    assert said["budgets"] == (
        "Every model was sized to its dataset's parameter budget on 1 of 2 datasets: MNIST 1,000 (actual counts 1,020 "
        "to 1,060). Without a budget, the models' parameter counts are: the 8×8 digits 5,000 to 20,000 (the VAE to "
        "MAF)."
    )


def test_within_noise_sentence_says_why() -> None:
    x = np.random.default_rng(4).normal(3.0, 0.5, 100)
    found = paired_comparison(_scores([x - 0.12, x + 0.08]), _scores([x, x]))
    row = pd.Series({"a": "vae", "b": "maf", **vars(found), "within_noise": found.within_noise})
    text = comparisons.comparison_sentence(row)
    assert text.startswith("the VAE (2.") and "and MAF (" in text
    assert "are within noise (difference 0.020, 95% CI" in text
    assert text.endswith(f"seed sd up to {found.seed_spread:.3f}: the difference is below the seed spread)")


def test_misaligned_test_sets_and_mixed_budgets_are_named(tmp_path) -> None:
    x = np.full(N, 3.0)
    metrics = [
        _write_run(tmp_path, "mnist", "vae", 0, x, labels=np.zeros(N, int)),
        _write_run(tmp_path, "mnist", "maf", 0, x, labels=np.ones(N, int)),
    ]
    sanity = likelihood.load_baselines([_write_baseline(tmp_path, "mnist", x)])
    stale = "mnist: .*vae/seed0/test_scores.npz scores 300 test examples with other labels but .*maf/seed0"
    with pytest.raises(ValueError, match=stale):
        comparisons.load_example_scores(likelihood.load_runs(metrics), sanity)
    runs = pd.DataFrame(
        {"dataset": "mnist", "model": ["vae", "maf"], "parameters": 10, "parameter_budget": [1000, math.nan]}
    )
    with pytest.raises(ValueError, match="runs of mnist were trained under different parameter budgets"):
        comparisons.budgets(runs)


def test_load_runs_names_a_missing_train_json_and_old_metrics(tmp_path) -> None:
    path = _write_run(tmp_path, "mnist", "vae", 0, np.full(N, 3.0))
    path.with_name("train.json").unlink()
    with pytest.raises(FileNotFoundError, match="train.json does not exist.*retrain that run"):
        likelihood.load_runs([path])
    old = json.loads(path.read_text())
    del old["converged"], old["stopped_by"]
    path.write_text(json.dumps(old))
    path.with_name("train.json").write_text(json.dumps({"run": {"training": {"steps": 100}}}))
    with pytest.raises(ValueError, match="no converged or stopped_by.*predates early stopping.*rerun its evaluation"):
        likelihood.load_runs([path])
