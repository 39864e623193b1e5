"""FFJORD: continuous normalizing flows with a free-form Jacobian (Grathwohl et al. 2019).

A CNF block maps ``z(0) = h`` (data side) to ``z(T)`` (base side) by the ODE
``dz/dt = f(z(t), t)`` (Chen et al. 2018, "Neural ODEs", §4). Along a trajectory the log-density
obeys the instantaneous change of variables (Chen et al. 2018, Thm. 1; Grathwohl et al. 2019, eq. 4)

    d log p(z(t)) / dt = -Tr(∂f/∂z(t)),

so ``log p_0(z(0)) = log p_T(z(T)) + ∫_0^T Tr(∂f/∂z) dt``. We integrate the *log-determinant*
state ``a(t)``, ``da/dt = +Tr(∂f/∂z)``, ``a(0) = 0``, jointly with ``z``; by Liouville's formula
``a(T) = log|det ∂z(T)/∂z(0)|`` — the same forward-map log-det every other flow of the package
returns (:class:`~vaeflow.models.transforms.Bijection` convention). Hence, with ``Δ = -a(T)`` the
paper's ``Δlogp``, ``log p(x) = log N(z(T); 0, I) + a(T) = log N(z(T)) - Δ``.

Time is rescaled to ``s = t/T ∈ [0, 1]``: the solver integrates ``dz/ds = T·f(z, sT)`` and
``da/ds = T·Tr(∂f/∂z)``, so the integration length ``T`` (``time_length``, learnable with
``train_time`` as in FFJORD) is an ordinary parameter of the dynamics and needs no gradient
through the solver's time grid.

Traces (Grathwohl et al. 2019, §2.2):

* **Hutchinson** (training): ``Tr(A) ≈ εᵀAε`` with one Rademacher (or Gaussian) ``ε`` drawn per
  solve and held fixed over the whole solve, so the integrated estimate is unbiased for ``a(T)``;
  one vector-Jacobian product per function evaluation.
* **Exact** (evaluation, ``D ≤ exact_trace_max_dim``): ``Σ_g (m_gᵀ J) m_g`` over 0/1 probe masks
  ``m_g`` that partition the coordinates so that ``J_ik = 0`` for distinct ``i, k`` in one mask.
  Vectors (dense MLP): the ``D`` unit vectors. Images: the conv dynamics have receptive radius
  ``r = layers + 1`` (that many 3x3 convolutions), so pixels whose row *and* column agree modulo
  ``r + 1`` never interact (Curtis–Powell–Reid colouring of a banded Jacobian): ``C·min(r+1,H)·
  min(r+1,W)`` probes instead of ``D`` — 25 for the default on a 1-channel image, against 64,
  196 or 256. Deterministic; cost = that many backward passes per function evaluation.

Images take dequantised levels in level units: :class:`LogitPreprocess` first (its log-det holds
``-D·log K``, see :mod:`vaeflow.models.base`), then ``blocks`` CNFs on the image-shaped logit
variable. Vectors (``levels = None``) use the CNFs directly. The base is ``N(0, I)``.

Dynamics: vectors, an MLP of FFJORD's concat-squash layers ``(W h + b)⊙σ(g(t)) + c(t)`` with tanh;
images, 3x3 convolutions with time as an extra input channel ("concat", FFJORD's MNIST setting) and
softplus. The last layer is zero-initialised, so a fresh model is the identity map.

Notes. An adaptive solver picks one step sequence for the whole batch, so ``log_prob`` of one
example depends (at the level of the tolerances) on the rest of its batch. A fixed-grid solver
(``solver="rk4"``, ``solver_steps``) is cheap but its integrated trace is not the log-det of the
discretised map, so such a density is only approximately normalised; hence evaluation (``log_prob``,
``sample``) has its own solver settings, ``eval_solver="dopri5"`` at 1e-5 by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaeflow.models.flow import Flow
from vaeflow.models.options import (
    check_choice,
    check_count,
    check_levels,
    check_optional_count,
    check_positive,
    check_rank,
)
from vaeflow.models.precision import autocast_off
from vaeflow.models.transforms import LogitPreprocess

TRACES = ("exact", "hutchinson")
NOISES = ("rademacher", "gaussian")
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"tanh": torch.tanh, "softplus": F.softplus}


def _solvers() -> dict:
    """torchdiffeq's solver table, imported on first use: torchdiffeq loads scipy.integrate
    (about 0.3 s), which every job that merely imports the model registry would otherwise pay."""
    from torchdiffeq._impl.odeint import SOLVERS

    return SOLVERS


# --- dynamics ----------------------------------------------------------------------------------


class ConcatSquashLinear(nn.Module):
    """FFJORD's concat-squash layer: ``(W h + b) ⊙ σ(a·t + c) + d·t`` (``lib/layers/diffeq_layers``)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.gate = nn.Linear(1, n_out)
        self.shift = nn.Linear(1, n_out, bias=False)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        tt = t.reshape(1, 1).to(h)
        return self.linear(h) * torch.sigmoid(self.gate(tt)) + self.shift(tt)

    def zero_(self) -> None:
        """Make the layer output exactly zero (for every ``h`` and ``t``)."""
        for p in (self.linear.weight, self.linear.bias, self.shift.weight):
            nn.init.zeros_(p)


class ConcatConv2d(nn.Module):
    """3x3 convolution of ``[t, h]``: time as a constant extra input channel (FFJORD "concat")."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in + 1, c_out, 3, padding=1)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        tt = t.to(h).expand(h.shape[0], 1, *h.shape[2:])
        return self.conv(torch.cat([tt, h], dim=1))

    def zero_(self) -> None:
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)


class Dynamics(nn.Module):
    """``f(t, z)``: ``layers`` hidden layers of ``width`` units/channels, a smooth activation between,
    and a zero-initialised output layer (the flow starts as the identity).

    ``receptive_radius`` is ``None`` for a dense MLP; for the conv net it is the Chebyshev radius
    (in pixels) beyond which ``∂f_i/∂z_k = 0`` — used to colour the exact trace.
    """

    def __init__(self, event_shape: tuple[int, ...], width: int, layers: int, activation: str) -> None:
        super().__init__()
        self.event_shape = event_shape
        self.activation = ACTIVATIONS[activation]
        if len(event_shape) == 3:
            make: Callable[[int, int], nn.Module] = ConcatConv2d
            io = event_shape[0]
            self.receptive_radius: int | None = layers + 1
        else:
            make = ConcatSquashLinear
            io = event_shape[0]
            self.receptive_radius = None
        sizes = [io] + [width] * layers + [io]
        self.layers = nn.ModuleList([make(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        self.layers[-1].zero_()  # type: ignore[operator]

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        h = z
        for i, layer in enumerate(self.layers):
            h = layer(t, h)
            if i < len(self.layers) - 1:
                h = self.activation(h)
        return h


def trace_probes(event_shape: tuple[int, ...], receptive_radius: int | None) -> Tensor:
    """0/1 masks ``(P, *event_shape)`` partitioning the coordinates so that no two coordinates of one
    mask interact through ``f``: unit vectors for a dense map, a periodic colouring for a local conv net."""
    dims = math.prod(event_shape)
    if receptive_radius is None or len(event_shape) != 3:
        return torch.eye(dims).reshape(dims, *event_shape)
    channels, height, width = event_shape
    ph, pw = min(receptive_radius + 1, height), min(receptive_radius + 1, width)
    rows = (torch.arange(height) % ph).view(-1, 1)
    cols = (torch.arange(width) % pw).view(1, -1)
    masks = torch.zeros(channels, ph, pw, channels, height, width)
    for c in range(channels):
        for a in range(ph):
            for b in range(pw):
                masks[c, a, b, c] = ((rows == a) & (cols == b)).float()
    return masks.reshape(-1, *event_shape)


# --- one CNF block and its ODE right-hand side --------------------------------------------------


@dataclass(frozen=True)
class SolverSettings:
    """Which torchdiffeq method, tolerances and options one solve uses."""

    method: str
    atol: float
    rtol: float
    steps: int  # fixed-grid solvers: steps over the rescaled interval [0, 1]
    max_num_steps: int
    adjoint: bool

    def odeint_kwargs(self) -> dict:
        from torchdiffeq._impl.solvers import FixedGridODESolver

        if issubclass(_solvers()[self.method], FixedGridODESolver):
            options = {"step_size": 1.0 / self.steps}
        else:
            options = {"max_num_steps": self.max_num_steps}
        return {"method": self.method, "atol": self.atol, "rtol": self.rtol, "options": options}


class _RightHandSide:
    """``s ↦ (T·f(z, sT), T·Tr(∂f/∂z))`` for :func:`torchdiffeq.odeint`, or ``T·f`` alone (no trace).

    Differentiable (``create_graph``) exactly when gradients are enabled at call time: in training,
    and in the adjoint's backward solve; plain tensors under ``torch.no_grad`` (evaluation).
    """

    def __init__(self, block: CNF, trace: str | None, noise: Tensor | None, probes: Tensor | None) -> None:
        self.block, self.trace, self.noise, self.probes = block, trace, noise, probes
        self.calls = 0

    def __call__(self, s: Tensor, state: Tensor | tuple[Tensor, Tensor]) -> Tensor | tuple[Tensor, Tensor]:
        self.calls += 1
        block = self.block
        time_length = block.time_length
        if self.trace is None:
            z = state
            return time_length * block.dynamics(s * time_length, z)
        z = state[0]
        differentiable = torch.is_grad_enabled()
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            f = time_length * block.dynamics(s * time_length, z)
            if self.trace == "hutchinson":
                assert self.noise is not None
                vjp = torch.autograd.grad(f, z, self.noise, create_graph=differentiable)[0]
                trace = (vjp * self.noise).flatten(1).sum(1)
            else:
                assert self.probes is not None
                trace = f.new_zeros(f.shape[0])
                last = len(self.probes) - 1
                for i, probe in enumerate(self.probes):
                    vjp = torch.autograd.grad(
                        f, z, probe.expand_as(f), create_graph=differentiable, retain_graph=differentiable or i < last
                    )[0]
                    trace = trace + (vjp * probe).flatten(1).sum(1)
        if not differentiable:
            f, trace = f.detach(), trace.detach()
        return f, trace


class CNF(nn.Module):
    """One continuous normalizing flow block ``z(0) ↦ z(T)`` with its integration length ``T``."""

    def __init__(self, dynamics: Dynamics, time_length: float, train_time: bool, noise: str = "rademacher") -> None:
        super().__init__()
        self.dynamics = dynamics
        self.noise = noise
        log_t = torch.tensor(math.log(time_length))
        if train_time:
            self.log_time_length = nn.Parameter(log_t)
        else:
            self.register_buffer("log_time_length", log_t)
        self.register_buffer("probes", trace_probes(dynamics.event_shape, dynamics.receptive_radius), persistent=False)

    @property
    def time_length(self) -> Tensor:
        return self.log_time_length.exp()

    def _odeint(self, rhs: _RightHandSide, y0, s: Tensor, settings: SolverSettings):
        from torchdiffeq import odeint, odeint_adjoint

        kwargs = settings.odeint_kwargs()
        try:
            if settings.adjoint:
                return odeint_adjoint(rhs, y0, s, adjoint_params=tuple(self.parameters()), **kwargs)
            return odeint(rhs, y0, s, **kwargs)
        except AssertionError as error:  # torchdiffeq signals step failures with assert
            raise RuntimeError(
                f"FFJORD: the ODE solve failed ({error}) with solver {settings.method!r}, atol={settings.atol}, "
                f"rtol={settings.rtol}, max_num_steps={settings.max_num_steps}: the dynamics have become stiff. "
                f"Loosen atol/rtol, raise max_num_steps, lower the learning rate, or use a fixed-grid solver."
            ) from error

    def integrate(
        self, z: Tensor, settings: SolverSettings, trace: str | None, reverse: bool = False
    ) -> tuple[Tensor, Tensor | None, _RightHandSide]:
        """Solve from ``s = 0`` to ``1`` (``reverse``: 1 to 0). Returns ``(z_end, logdet or None, rhs)``;
        ``rhs.calls`` counts function evaluations (later calls are the adjoint's backward solve);
        ``logdet = log|det ∂z(1)/∂z(0)| = ∫ T·Tr(∂f/∂z) ds`` (``trace`` "exact" or "hutchinson")."""
        s = torch.tensor([1.0, 0.0] if reverse else [0.0, 1.0], dtype=z.dtype, device=z.device)
        noise = probes = None
        if trace == "hutchinson":  # one ε per solve, fixed over the solve (FFJORD §2.2)
            noise = torch.randint_like(z, 0, 2) * 2 - 1 if self.noise == "rademacher" else torch.randn_like(z)
        elif trace == "exact":
            probes = self.probes.to(z)
        rhs = _RightHandSide(self, trace, noise, probes)
        if trace is None:
            out = self._odeint(rhs, z, s, settings)
            return out[-1], None, rhs
        zs, logdets = self._odeint(rhs, (z, z.new_zeros(z.shape[0])), s, settings)
        return zs[-1], logdets[-1], rhs


# --- the density model --------------------------------------------------------------------------


class FFJORD(Flow):
    """FFJORD density model (Grathwohl et al. 2019); ``exact = True``, ``discrete = False``.

    Options (keyword, defaults in brackets):

    * architecture: ``hidden`` [64] units (vectors) / ``hidden_channels`` [32] (images) per hidden
      layer, ``layers`` [3] hidden layers, ``activation`` [None: tanh for vectors, softplus for
      images], ``blocks`` [1] stacked CNFs, ``time_length`` [None: 0.5 for vectors, 1.0 for images]
      per block, ``train_time`` [None: True for vectors, False for images] (learn ``T``), as FFJORD's
      own code does (``train_toy.py``/``train_tabular.py`` against ``train_cnf.py``), ``logit_alpha``
      [0.05] (images).
    * training solve (``loss``): ``solver`` ["dopri5"], ``atol`` [1e-5], ``rtol`` [1e-5],
      ``solver_steps`` [8] (fixed-grid solvers such as "rk4", "euler": steps per block),
      ``adjoint`` [False] (``odeint_adjoint``: O(1) memory, an extra backward solve),
      ``trace`` ["hutchinson"] ("exact" trains on the exact trace), ``noise`` ["rademacher"] or
      "gaussian" for Hutchinson's ε, ``max_num_steps`` [1000] per adaptive solve.
    * evaluation solve (``log_prob``, ``sample``): ``eval_solver`` ["dopri5"], ``eval_atol`` [1e-5],
      ``eval_rtol`` [1e-5], ``eval_solver_steps`` [None: ``solver_steps``]; exact trace when
      ``D ≤ exact_trace_max_dim`` [256] (P backward passes per function evaluation, see the module
      docstring), Hutchinson (stochastic, unbiased) otherwise.
    """

    label = "FFJORD"
    year = 2019  # Grathwohl et al., FFJORD: free-form continuous dynamics for scalable reversible generative models

    width_option_images = "hidden_channels"  # the dynamics network's convolutions

    slow_density = True  # an adaptive ODE solve with the trace of the Jacobian
    slow_sampling = True  # an adaptive ODE solve backwards
    #: float32 throughout, autocast or not: the adaptive solver's error control (tolerances 1e-5)
    #: cannot work on bfloat16 dynamics (resolution 2^-8), and the trace is a sum of D terms.
    mixed_precision = False

    def __init__(
        self,
        data_shape: tuple[int, ...],
        levels: int | None,
        *,
        hidden: int = 64,
        hidden_channels: int = 32,
        layers: int = 3,
        activation: str | None = None,
        blocks: int = 1,
        time_length: float | None = None,
        train_time: bool | None = None,
        logit_alpha: float = 0.05,
        solver: str = "dopri5",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        solver_steps: int = 8,
        adjoint: bool = False,
        trace: str = "hutchinson",
        noise: str = "rademacher",
        max_num_steps: int = 1000,
        eval_solver: str = "dopri5",
        eval_atol: float = 1e-5,
        eval_rtol: float = 1e-5,
        eval_solver_steps: int | None = None,
        exact_trace_max_dim: int = 256,
    ) -> None:
        super().__init__(data_shape, levels)
        check_rank("FFJORD", self.data_shape)
        check_levels("FFJORD", self.levels)
        image = len(self.data_shape) == 3
        hidden = check_count("FFJORD", "hidden", hidden)
        hidden_channels = check_count("FFJORD", "hidden_channels", hidden_channels)
        layers = check_count("FFJORD", "layers", layers)
        blocks = check_count("FFJORD", "blocks", blocks)
        solver_steps = check_count("FFJORD", "solver_steps", solver_steps)
        max_num_steps = check_count("FFJORD", "max_num_steps", max_num_steps)
        eval_solver_steps = check_optional_count("FFJORD", "eval_solver_steps", eval_solver_steps)
        exact_trace_max_dim = check_count("FFJORD", "exact_trace_max_dim", exact_trace_max_dim, minimum=0)
        methods = [m for m in _solvers() if m != "scipy_solver"]
        check_choice("FFJORD", "solver", solver, methods, "a torchdiffeq method")
        check_choice("FFJORD", "eval_solver", eval_solver, methods, "a torchdiffeq method")
        time_length = time_length if time_length is not None else (1.0 if image else 0.5)
        train_time = train_time if train_time is not None else not image
        for name, value in (
            ("atol", atol),
            ("rtol", rtol),
            ("eval_atol", eval_atol),
            ("eval_rtol", eval_rtol),
            ("time_length", time_length),
        ):
            check_positive("FFJORD", name, value)
        activation = activation or ("softplus" if image else "tanh")
        check_choice("FFJORD", "activation", activation, sorted(ACTIVATIONS), "smooth, for the ODE")
        check_choice("FFJORD", "trace", trace, TRACES)
        check_choice("FFJORD", "noise", noise, NOISES)

        self.preprocess = None if self.levels is None else LogitPreprocess(self.levels, logit_alpha)
        width = hidden_channels if image else hidden
        self.blocks = nn.ModuleList(
            [
                CNF(
                    Dynamics(self.data_shape, int(width), int(layers), activation),
                    float(time_length),
                    bool(train_time),
                    noise,
                )
                for _ in range(int(blocks))
            ]
        )
        self.train_trace = trace
        self.exact_trace_max_dim = int(exact_trace_max_dim)
        if self.num_dims > self.exact_trace_max_dim:
            self.density_estimator = "unbiased Hutchinson estimate of the log-det"
        self.train_settings = SolverSettings(
            solver, float(atol), float(rtol), int(solver_steps), int(max_num_steps), bool(adjoint)
        )
        self.eval_settings = SolverSettings(
            eval_solver,
            float(eval_atol),
            float(eval_rtol),
            int(eval_solver_steps or solver_steps),
            int(max_num_steps),
            False,
        )
        # function-evaluation counters (not saved with the state dict)
        self._nfe: dict[str, float] = {
            "train_last": 0.0,
            "train_total": 0.0,
            "train_solves": 0.0,
            "eval_last": 0.0,
            "eval_total": 0.0,
            "eval_solves": 0.0,
        }
        # the last training solve's right-hand sides and their call counts when the forward solve ended
        self._last_train_rhs: list[tuple[_RightHandSide, int]] = []

    # -- maps ---------------------------------------------------------------------------------

    def _settings(self, which: str) -> SolverSettings:
        return self.train_settings if which == "train" else self.eval_settings

    def _record(self, which: str, nfe: int) -> None:
        self._nfe[f"{which}_last"] = float(nfe)
        self._nfe[f"{which}_total"] += nfe
        self._nfe[f"{which}_solves"] += 1

    def forward_and_logdet(self, y: Tensor, trace: str = "exact", solver: str = "eval") -> tuple[Tensor, Tensor]:
        """Map inputs to the flattened base variable ``z (B, D)`` and ``log|det ∂z/∂y|`` ``(B,)``,
        the LogitPreprocess term included. ``trace``: "exact" or "hutchinson"; ``solver``: "eval"
        or "train" settings."""
        if trace not in TRACES:
            raise ValueError(f"FFJORD.forward_and_logdet: trace must be one of {TRACES}, got {trace!r}")
        settings = self._settings(solver)
        with autocast_off(y.device):  # float32 even inside a mixed-precision region (mixed_precision)
            h, logdet = self.preprocessed(y)
            solved = []
            for block in self.blocks:
                h, step, rhs = block.integrate(h, settings, trace)
                logdet = logdet + step
                solved.append((rhs, rhs.calls))
        if solver == "train":
            self._last_train_rhs = solved
        self._record("train" if solver == "train" else "eval", sum(calls for _, calls in solved))
        return h.flatten(1), logdet

    def transform(self, y: Tensor, solver: str = "eval") -> Tensor:
        """``y ↦ z`` (flattened, ``(B, D)``) without any trace: the map whose Jacobian the log-det describes."""
        with autocast_off(y.device):
            h = self.preprocessed(y)[0]
            for block in self.blocks:
                h = block.integrate(h, self._settings(solver), None)[0]
        return h.flatten(1)

    def inverse(self, z_flat: Tensor, solver: str = "eval") -> Tensor:
        """Invert :meth:`transform`: integrate every block backwards, then undo the logit."""
        h = z_flat.reshape(-1, *self.data_shape)
        with autocast_off(h.device):
            for block in reversed(self.blocks):
                h = block.integrate(h, self._settings(solver), None, reverse=True)[0]
            return self.unpreprocessed(h)

    # -- the interface --------------------------------------------------------------------------

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(y) = log N(z(T)) + log|det ∂z/∂y|`` in nats with the evaluation solver; exact trace
        (deterministic) when ``D ≤ exact_trace_max_dim``, else an unbiased Hutchinson estimate."""
        trace = "exact" if self.num_dims <= self.exact_trace_max_dim else "hutchinson"
        z, logdet = self.forward_and_logdet(x, trace=trace, solver="eval")
        return self.base_log_prob(z) + logdet

    def loss(self, x: Tensor) -> Tensor:
        """Negative (Hutchinson-estimated, unless ``trace="exact"``) log-likelihood, mean over the batch,
        with the training solver."""
        z, logdet = self.forward_and_logdet(x, trace=self.train_trace, solver="train")
        return -(self.base_log_prob(z) + logdet).mean()

    def latent(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``z = f(y)``, the ODE solution without the trace (:meth:`transform`)."""
        return self.transform(x)

    def diagnostics(self) -> dict[str, float]:
        """Function evaluations (summed over blocks) of the forward solves: the last and the mean per
        training (``loss``) and evaluation (``log_prob``) solve, and each block's ``T``.

        With ``adjoint=False`` gradients backpropagate through the forward solve's graph (no extra
        function evaluations, memory ∝ NFE); with ``adjoint=True`` the backward solve's evaluations
        are in ``nfe_backward`` (last training step)."""
        nfe = self._nfe
        out = {
            "nfe_forward": nfe["train_last"],
            "nfe_forward_mean": nfe["train_total"] / max(nfe["train_solves"], 1.0),
            "nfe_backward": float(sum(rhs.calls - calls for rhs, calls in self._last_train_rhs)),
            "nfe_eval": nfe["eval_last"],
            "nfe_eval_mean": nfe["eval_total"] / max(nfe["eval_solves"], 1.0),
            "train_solves": nfe["train_solves"],
            "eval_solves": nfe["eval_solves"],
        }
        for i, block in enumerate(self.blocks):
            out[f"time_length_{i}"] = float(block.time_length.detach())
        return out
