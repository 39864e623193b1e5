"""The contract every registered model keeps, checked against brute force for each of them.

Parametrised over :data:`vaeflow.models.MODELS`, so a model added to the registry is checked
with no edit here: its exact flows (subclasses of :class:`vaeflow.models.flow.Flow`) invert,
their log-dets equal the log-determinant of the full autograd Jacobian, and their 2-D densities
integrate to one on a grid; every model gives finite likelihoods, losses and gradients on the
extreme images (every pixel at level 0, every pixel at level K-1), samples integer levels in
range, refuses booleans for its integer options, decodes its own latents, and the workflow's
torch-free likelihood rule agrees with the model's ``reports_bound()``. Seeded throughout.

The models are built small (:data:`SMALL`, a model missing there is built with its defaults)
and their parameters moved off their initial values (:func:`brute_force.randomise`): most flows
start as the identity, where every check would pass for the wrong reasons.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from brute_force import F64, dequantised_levels, jacobian_logdet, randomise
from vaeflow.models import MODELS, NOT_LITERAL, build_model, model_options, registry
from vaeflow.models.base import DensityModel
from vaeflow.models.flow import Flow
from vaeflow.models.transforms import to_levels
from vaeflow.probes import applies

#: small options per model, so the checks run in seconds (images and vectors alike)
SMALL: dict[str, dict] = {
    "vae": {"latent_dim": 4, "hidden": 32},
    "vae_iaf": {"latent_dim": 4, "hidden": 32, "iaf_hidden": 16, "context_dim": 4},
    "realnvp": {"hidden_channels": 8, "res_blocks": 1, "coupling_layers": 4, "hidden": 16},
    "glow": {"hidden_channels": 8, "steps": 2, "vector_steps": 3, "hidden": 16},
    "maf": {"blocks": 3, "hidden": 16},
    "iaf": {"blocks": 3, "hidden": 16},
    "ffjord": {"hidden": 16, "hidden_channels": 8, "layers": 2},
    "flowpp": {
        "hidden_channels": 8,
        "steps": 2,
        "components": 2,
        "dequant_steps": 1,
        "coupling_layers": 4,
        "hidden": 16,
    },
}
#: FFJORD's density and inverse are ODE solves: tight tolerances for the brute-force comparisons
TIGHT_SOLVES = {"ffjord": {"eval_atol": 1e-9, "eval_rtol": 1e-9, "atol": 1e-9, "rtol": 1e-9, "trace": "exact"}}

FLOWS = [name for name, cls in MODELS.items() if issubclass(cls, Flow)]
SHAPES = [((2,), None), ((1, 8, 8), 17), ((1, 14, 14), 256)]


def small(
    name: str,
    shape: tuple[int, ...],
    levels: int | None,
    *,
    dtype: torch.dtype = torch.float32,
    std: float = 0.05,
    seed: int = 0,
    **options: object,
) -> DensityModel:
    """A seeded small model with randomised parameters, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(name, shape, levels, {**SMALL.get(name, {}), **options}).to(dtype)
    return randomise(model, std=std, seed=seed).eval()


def image_fits(name: str, shape: tuple[int, ...]) -> dict:
    """Options that let the multi-scale flows fit a 14x14 image (Glow squeezes at every level)."""
    return {"n_levels": 1} if name == "glow" and shape[-1] % 4 else {}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


# --- exact flows: inverse, log-det, normalisation --------------------------------------------------


#: inverse tolerance (relative, float64): algebraic inverses are exact to rounding, Flow++'s
#: mixture CDFs are inverted by bisection, FFJORD's by a backward ODE solve
INVERSE_TOLERANCE = {"flowpp": 1e-7, "ffjord": 1e-6}
#: log-det tolerance (absolute, nats): FFJORD integrates the trace with the adaptive solver
LOGDET_TOLERANCE = {"ffjord": 1e-6}


@pytest.mark.parametrize(("shape", "levels"), [((2,), None), ((1, 4, 4), 5)], ids=["vectors", "images"])
@pytest.mark.parametrize("name", FLOWS)
def test_flow_inverts_and_its_logdet_is_the_jacobians(name: str, shape: tuple[int, ...], levels: int | None) -> None:
    model = small(name, shape, levels, dtype=F64, **TIGHT_SOLVES.get(name, {}))
    if levels is None:
        y = 1.5 * torch.randn(3, *shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    else:
        y = dequantised_levels((3, *shape), levels, seed=1)
    with torch.no_grad():
        z, logdet = model.forward_and_logdet(y)
        assert z.shape == (3, math.prod(shape)) and logdet.shape == (3,)
        assert relative_error(model.inverse(z), y) < INVERSE_TOLERANCE.get(name, 1e-10)
    for i in range(len(y)):
        brute = jacobian_logdet(lambda v: model.forward_and_logdet(v)[0], y[i : i + 1])
        assert logdet[i].item() == pytest.approx(brute.item(), abs=LOGDET_TOLERANCE.get(name, 1e-8))
    # the change of variables, and an exact likelihood is its own bound
    with torch.no_grad():
        torch.testing.assert_close(model.flow_log_prob(y), model.base_log_prob(z) + logdet)
        if model.exact:
            torch.testing.assert_close(model.log_prob(y), model.flow_log_prob(y))
            torch.testing.assert_close(model.log_prob_bound(y, 7), model.log_prob(y))
            torch.testing.assert_close(model.loss(y), -model.log_prob(y).mean())


#: parameter noise that moves each flow far from its base: FFJORD's dynamics, integrated over
#: T = 1/2 from a zero output layer, need more than the others
NORMALISATION_STD = {"ffjord": 0.3}


@pytest.mark.parametrize("name", FLOWS)
def test_flow_density_on_the_plane_integrates_to_one(name: str) -> None:
    """Riemann sum of ``exp log p`` over ``[-10, 10]²`` (400² cells); the randomised flow must be far
    (total variation > 0.1) from its standard normal base, or the check would be trivial."""
    model = small(name, (2,), None, dtype=F64, std=NORMALISATION_STD.get(name, 0.1))
    anisotropic = torch.randn(512, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    model.initialize(anisotropic * torch.tensor([1.5, 0.7], dtype=F64) + 0.5)  # Glow's actnorm; others: nothing
    half_width, n = 10.0, 400
    edges = torch.linspace(-half_width, half_width, n + 1, dtype=F64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    cell = (2 * half_width / n) ** 2
    grid = torch.cartesian_prod(centres, centres)
    with torch.no_grad():
        density = model.log_prob(grid).exp()
    assert (density.sum() * cell).item() == pytest.approx(1.0, abs=0.02)
    base = (-0.5 * grid.square().sum(1) - math.log(2 * math.pi)).exp()
    assert 0.5 * ((density - base).abs().sum() * cell).item() > 0.1


class _DiagonalAffine(Flow):
    """The smallest exact flow, a transform and nothing else: ``z = (y - m)·exp(-a)`` elementwise,
    so ``log p(y) = log N(y; m, diag exp(2a))``."""

    def __init__(self) -> None:
        super().__init__((2,), None)
        self.shift = nn.Parameter(torch.tensor([0.5, -1.0], dtype=F64))
        self.log_scale = nn.Parameter(torch.tensor([0.3, -0.2], dtype=F64))

    def forward_and_logdet(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self.check_input(y)
        return (y - self.shift) * torch.exp(-self.log_scale), (-self.log_scale.sum()).expand(len(y))

    def inverse(self, z: Tensor) -> Tensor:
        return z * torch.exp(self.log_scale) + self.shift


def test_a_flow_that_writes_only_its_transform_gets_density_bound_loss_and_sampling() -> None:
    model = _DiagonalAffine()
    y = 2 * torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    with torch.no_grad():
        expected = torch.distributions.Normal(model.shift, model.log_scale.exp()).log_prob(y).sum(1)
        torch.testing.assert_close(model.log_prob(y), expected)
        torch.testing.assert_close(model.log_prob_bound(y, 5), expected)
        torch.testing.assert_close(model.loss(y), -expected.mean())
        torch.testing.assert_close(model.from_latent(model.latent(y)), y)
    with pytest.raises(ValueError, match=r"_DiagonalAffine expects inputs of shape \(batch, \*\(2,\)\)"):
        model.log_prob(torch.zeros(3, 4, dtype=F64))
    torch.manual_seed(0)
    samples = model.sample(40_000, temperature=0.5)  # N(0, T²I) through the inverse: std T·exp(a)
    torch.testing.assert_close(samples.mean(0), model.shift.detach(), atol=0.01, rtol=0)
    torch.testing.assert_close(samples.std(0), 0.5 * model.log_scale.detach().exp(), atol=0, rtol=0.02)


# --- every model -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "levels"), [((1, 8, 8), 17), ((1, 14, 14), 256)], ids=["K17", "K256"])
@pytest.mark.parametrize("name", list(MODELS))
def test_extreme_images_give_finite_likelihoods_and_gradients(name: str, shape: tuple[int, ...], levels: int) -> None:
    model = small(name, shape, levels, **image_fits(name, shape)).train()
    for value in (0.0, levels - 1.0):
        x = torch.full((2, *shape), value)
        # a continuous model sees dequantised levels, the exact bin edges 0 and K - 1 + u (u < 1) included
        inputs = x if model.discrete else torch.cat([x, x + torch.rand_like(x) * 0.999])
        with torch.no_grad():
            assert torch.isfinite(model.log_prob(inputs)).all()
            assert torch.isfinite(model.log_prob_bound(inputs, 3)).all()
        model.zero_grad()
        loss = model.loss(inputs)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", list(MODELS))
def test_vector_loss_has_finite_gradients_for_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, (2,), None, {})
    model.loss(torch.randn(16, 2)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(("shape", "levels"), SHAPES, ids=["vectors", "K17", "K256"])
@pytest.mark.parametrize("name", list(MODELS))
def test_samples_have_the_data_shape_and_integer_levels_in_range(
    name: str, shape: tuple[int, ...], levels: int | None
) -> None:
    model = small(name, shape, levels, **image_fits(name, shape))
    for temperature in (1.0, 0.5):
        samples = model.sample(7, temperature=temperature)
        assert samples.shape == (7, *shape) and samples.dtype == torch.float32
        assert torch.isfinite(samples).all()
        if levels is not None:
            assert torch.equal(samples, samples.floor())
            assert samples.min() >= 0 and samples.max() <= levels - 1
    assert samples.unique().numel() > 2  # not a constant image


@pytest.mark.parametrize("name", list(MODELS))
def test_integer_options_refuse_booleans_naming_model_option_and_value(name: str) -> None:
    cls = MODELS[name]
    counts = [
        option
        for option, default in model_options(cls).items()
        if isinstance(default, int) and not isinstance(default, bool)
    ]
    assert counts, f"{name} has no integer option"
    for option in counts:
        raised = []
        for shape, levels in ((2,), None), ((1, 8, 8), 17):  # an option of the other data kind is ignored
            try:
                build_model(name, shape, levels, {**SMALL.get(name, {}), option: True})
            except ValueError as error:
                raised.append(str(error))
        assert raised, f"{name} accepted {option}=True on vectors and on images"
        assert all(f"{cls.__name__} option {option!r}" in m and "got True" in m for m in raised), raised


@pytest.mark.parametrize(("shape", "levels"), [((2,), None), ((1, 8, 8), 17)], ids=["vectors", "images"])
@pytest.mark.parametrize("name", list(MODELS))
def test_capabilities_agree_with_the_model(name: str, shape: tuple[int, ...], levels: int | None) -> None:
    model = small(name, shape, levels)
    image = levels is not None
    # the workflow's torch-free likelihood rule is the model's own answer
    assert applies("likelihood", name, "any", image) == model.reports_bound()
    assert model.reports_bound() == (not model.exact)
    assert model.latent_kind in ("vae", "flow")
    # the latent of a batch decodes to examples of the data's shape
    x = torch.randint(0, levels, (4, *shape)).float() if image else torch.randn(4, *shape)
    y = x if model.discrete or not image else x + 0.5  # a continuous model's input: the bin's centre
    with torch.no_grad():
        z = model.latent(y, torch.Generator().manual_seed(0))
        assert z.dim() == 2 and len(z) == 4 and torch.isfinite(z).all()
        decoded = model.from_latent(z)
    assert decoded.shape == (4, *shape)
    if model.latent_kind == "flow":
        assert z.shape[1] == math.prod(shape)
        if not model.discrete:  # a bijection: its latent decodes to the very bin it came from
            torch.testing.assert_close(decoded, to_levels(y, levels), atol=1e-3 if levels is None else 0, rtol=0)
    else:
        assert z.shape[1] == model.latent_dim
    assert isinstance(model.latent_source, str) and model.latent_source


@pytest.mark.parametrize("name", list(MODELS))
def test_the_registry_card_reads_what_the_class_says(name: str) -> None:
    """The registry reads each model from its source without importing it (the workflow plans
    with it, torch-free): every fact it read is the class attribute Python resolves, and the
    options are the constructor's, with the same literal defaults."""
    card, cls = registry()[name], MODELS[name]
    assert (card.module, card.cls) == (cls.__module__.rsplit(".", 1)[-1], cls.__name__) == (name, cls.__name__)
    assert card.facts and all(getattr(cls, fact) == value for fact, value in card.facts.items())
    for fact in ("label", "year", "exact", "latent_kind", "can_complete", "slow_density", "slow_sampling"):
        assert card.facts[fact] == getattr(cls, fact), fact
    options = model_options(cls)
    assert dict.fromkeys(card.options) == dict.fromkeys(options)
    literal = {k: v for k, v in card.options.items() if v is not NOT_LITERAL}
    assert literal == {k: options[k] for k in literal}
    assert card.prose_name and card.label


def test_a_module_with_two_model_classes_is_refused(tmp_path, monkeypatch) -> None:
    """The class that sets ``label`` is the module's model: two of them in one module are an error that
    names the module."""
    import vaeflow.models as models

    (tmp_path / "twice.py").write_text(
        "class A:\n    label = 'A'\n    exact = True\n    year = 2020\n\n"
        "class B:\n    label = 'B'\n    exact = True\n    year = 2020\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(models, "PACKAGE_DIR", tmp_path)
    models._sources.cache_clear()
    models.registry.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"models/twice\.py: classes A, B all set `label`"):
            models.registry()
    finally:
        monkeypatch.undo()
        models._sources.cache_clear()
        models.registry.cache_clear()
    assert "twice" not in models.registry() and list(models.registry()) == list(MODELS)
