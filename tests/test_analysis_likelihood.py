"""The likelihood probe and analysis: IWAE-k curves against brute force, tables on the smoke study."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from vaeflow.analysis import likelihood
from vaeflow.data.store import PreparedDataset
from vaeflow.models.vae import VAE
from vaeflow.probes import likelihood as probe_module
from vaeflow.probes.likelihood import group_bounds
from vaeflow.probes import applies

F64 = torch.float64


def test_group_bounds_equal_the_brute_force_average_over_groups() -> None:
    log_w = torch.randn(12, 3, dtype=F64, generator=torch.Generator().manual_seed(0)) * 2
    got = group_bounds(log_w, [1, 3, 5, 12])
    for row, k in zip(got, [1, 3, 5, 12]):
        groups = 12 // k
        expected = [
            sum(math.log(sum(math.exp(log_w[g * k + i, n].item()) for i in range(k))) - math.log(k) for g in range(groups)) / groups
            for n in range(3)
        ]
        torch.testing.assert_close(row, torch.tensor(expected, dtype=F64))
    assert torch.allclose(got[0], log_w.mean(0))  # k = 1 is the ELBO estimate


def test_group_bounds_refuse_k_beyond_the_draws() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        group_bounds(torch.zeros(4, 2), [8])


def test_probe_curve_rises_with_k_and_stays_below_the_grid_marginal() -> None:
    torch.manual_seed(3)
    model = VAE((2,), None, latent_dim=1, hidden=16, layers=1).to(F64).eval()
    x = torch.tensor([[0.3, -1.2], [1.5, 0.8], [-0.4, 0.1]], dtype=F64)
    data = PreparedDataset(name="toy", train=x.numpy(), val=x.numpy(), test=x.numpy(), levels=None,
                           train_labels=None, val_labels=None, test_labels=None, options={}, seed=0, source="test")
    out = probe_module.probe(model, data, {"seed": 0, "iwae_ks": [1, 10, 100, 5000], "iwae_examples": 3}, {})
    assert list(out["k"]) == [1, 10, 100, 5000] and out["iwae_nats"].shape == (4, 3)
    curve = out["iwae_nats"]
    assert (np.diff(curve, axis=0) > -1e-3).all()  # group averages: non-decreasing in k here
    z = torch.linspace(-12, 12, 24001, dtype=F64).view(-1, 1)
    with torch.no_grad():
        joint = model.log_likelihood(x[:, None, :], z[None]) - 0.5 * z.square().sum(-1)[None] - 0.5 * math.log(2 * math.pi)
    log_px = (torch.logsumexp(joint, 1) + math.log(24 / 24000)).numpy()
    assert (curve[-1] <= log_px + 0.02).all() and (np.abs(curve[-1] - log_px) < 0.05).all()
    assert (curve[0] < log_px).all() and (log_px - curve[0]).max() > 0.05  # a real gap for k to close


def test_probe_covers_exactly_the_bound_models() -> None:
    assert applies("likelihood", "vae", "toy2d", image=False) and applies("likelihood", "vae_iaf", "digits", image=True)
    assert applies("likelihood", "flowpp", "mnist", image=True) and not applies("likelihood", "flowpp", "toy2d", image=False)
    assert not any(applies("likelihood", m, "mnist", image=True) for m in ("realnvp", "glow", "maf", "iaf", "ffjord"))


def test_per_class_table_names_the_easiest_and_hardest_class() -> None:
    classes = pd.DataFrame({"dataset": "digits", "model": "vae", "seed": [0, 0, 1, 1], "class": [0, 1, 0, 1],
                            "bits_per_dim": [1.0, 2.0, 1.2, 2.2]})
    table = likelihood.per_class_table(classes)
    assert table.loc[0, "class 0"] == pytest.approx(1.1) and table.loc[0, "class 1"] == pytest.approx(2.1)
    assert table.loc[0, "easiest"] == 0 and table.loc[0, "hardest"] == 1


def test_curve_variables_known_answers() -> None:
    nan = float("nan")
    rows = [("d", "vae", 0, 1, 3.0, False), ("d", "vae", 0, 10, 2.8, False), ("d", "vae", 1, 1, 3.2, False),
            ("d", "vae", 1, 10, 2.6, False), ("d", "realnvp", 0, nan, 2.5, True), ("d", "realnvp", 1, nan, 2.7, True),
            ("d", "iaf", 0, nan, float("inf"), True), ("d", "glow", 0, nan, 2.9, True)]
    curves = pd.DataFrame(rows, columns=["dataset", "model", "seed", "k", "bits_per_dim", "exact"])
    values = likelihood.curve_variables(curves, pd.DataFrame())["iwae"]["d"]
    assert values["vae"]["elbo_bpd"] == 3.1 and values["vae"]["iwae_max_bpd"] == 2.7
    assert values["vae"]["tightening_bpd"] == pytest.approx(0.4) and values["vae"]["non_increasing"]
    # best exact model on the same examples: realnvp (mean 2.6; the non-finite iaf is never "best")
    assert (values["best_exact_model"], values["best_exact_bpd"]) == ("realnvp", 2.6)
    assert values["vae"]["vs_best_exact_bpd"] == pytest.approx(0.1)  # the bound still lies above the flow


def test_variables_count_the_runs_still_improving_at_their_last_step() -> None:
    runs = pd.DataFrame({"dataset": "d", "model": ["vae", "vae", "maf"], "seed": [0, 1, 0],
                         "test_bpd": [2.0, 2.2, 3.0], "bound": ["iwae-10", "iwae-10", "exact"],
                         "steps": [100, 100, 50], "best_step": [100, 75, 50]})
    values = likelihood.variables(runs)
    assert values["runs"] == 3 and values["seeds"] == 2 and values["runs_best_at_last_step"] == 2
    assert values["d"]["vae"] == {"test_bpd": "2.100 ± 0.141", "bound": "iwae-10"}


# --- on the smoke study's results -------------------------------------------------------------


@pytest.mark.workflow
def test_smoke_likelihood_tables_are_sane(smoke_study) -> None:
    tables = smoke_study / "results/tables"
    iwae = pd.read_csv(tables / "likelihood_iwae.csv")
    assert set(iwae["model"]) == {"vae", "vae_iaf", "flowpp"}
    curve = pd.read_csv(smoke_study / "results/tables/likelihood_iwae.csv")
    assert not curve.filter(like="k=").isna().all(axis=1).any()
    gaps = pd.read_csv(tables / "likelihood_gaps.csv")
    assert len(gaps) == 8 * 4 and not gaps.isna().any().any()
    per_class = pd.read_csv(tables / "likelihood_per_class.csv")
    assert set(per_class["dataset"]) == {"digits", "mnist"}
    assert per_class.filter(like="class ").notna().all().all()
    assert (per_class.filter(like="class ").to_numpy() > 0).all()


@pytest.mark.workflow
def test_smoke_iwae_is_at_least_the_elbo(smoke_study) -> None:
    from vaeflow.analysis.runs import load_probes

    probes = load_probes(sorted(smoke_study.glob("results/*/*/seed*/probes/likelihood.npz")))
    assert probes
    for p in probes:
        k, curve = p.arrays["k"], p.arrays["iwae_nats"]
        assert k[0] == 1 and np.isfinite(curve).all()
        assert curve[-1].mean() >= curve[0].mean(), (p.dataset, p.model)  # IWAE-k ≥ ELBO on average
