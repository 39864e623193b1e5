"""How fast each model of the study runs, against the same family from a peer library and
against this machine's fp32 matmul peak.

For every model at the study's size on the data it is benchmarked on (the run's options from
the config), and a peer built to the nearest parameter count (only its hidden width moves):

* **training step**: forward, backward and Adam step on one batch of the study's batch size;
* **samples/s**: ``sample(n)`` under ``no_grad``;
* **density evaluations/s**: the model's log-density (exact for flows, the one-draw ELBO for
  the VAEs, the one-draw dequantised bound for Flow++) of ``n`` test examples under ``no_grad``.

Both sides are timed in the same process, interleaved (ours, peer, ours, peer…), each a median
over the calls of one repetition, and the reported time is the median over ``reps``
repetitions, so a slow moment of the machine lands on both sides. Every ratio is ours / peer
*time* (for throughput: peer rate / our rate), so below 1 always means ours is faster. Torch
runs on one thread, as every job of the study does; the rule that runs this benchmark holds
every core, so no other job competes.

Peers (pinned in pyproject.toml): pythae for VAE and VAE-IAF (its VAE and VAE_IAF with encoder
and decoder MLPs of our widths and our discretised-logistic likelihood); normflows for Real NVP (MaskedAffineFlow,
alternating masks) and Glow (ActNorm + LU 1×1 + affine coupling); zuko for MAF, IAF (the
inverse of its masked autoregressive transform) and FFJORD (its CNF, exact trace, its own
adaptive solver). No peer library implements Flow++, so it is timed alone. Flows are
compared on vector data (the 2-D toy density at the study's toy2d size, and the 8×8 digits as
64-D vectors with the same vector architecture); the VAEs on MNIST 14×14 at the study's image
size. The achieved FLOP rate of our training step (matmul and convolution FLOPs counted by
``torch.utils.flop_counter``, forward and backward) is set against the best of repeated
1024×1024 fp32 matmuls on the same single thread.

    python benchmarks/speed.py --config config/config.yaml           # writes results/benchmarks/speed.{json,md}
    python benchmarks/speed.py --config config/smoke.yaml --reps 1 --only vae maf
    python benchmarks/speed.py --only maf --json part/maf.json     # one model (the workflow runs one job per model)
    python benchmarks/speed.py --merge part/*.json                   # then combines the parts
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import peers  # noqa: E402  (benchmarks/peers.py: the peer builders and the width matching)
from vaeflow.config import ConfigError, run_config  # noqa: E402
from vaeflow.data import load_prepared  # noqa: E402
from vaeflow.data.dequantization import model_input, to_tensor  # noqa: E402
from vaeflow.io import write_json_atomic, write_text_atomic  # noqa: E402
from vaeflow.models import build_model, registry  # noqa: E402
from vaeflow.models.capacity import fit_to_budget  # noqa: E402
from vaeflow.models.distributions import discretized_logistic_log_prob, discretized_logistic_sample  # noqa: E402
from vaeflow.models.vae import _mlp as mlp  # noqa: E402  (the VAE's encoder/decoder MLP)
from vaeflow.models.vae import logistic_parameters  # noqa: E402
from vaeflow.training.engine import adam  # noqa: E402


def pairs() -> list[tuple[str, str, str]]:
    """What each model of the registry is timed on: (model, dataset, how the data is shaped, "native" or
    "vector"), in the registry's order. A VAE on MNIST, against pythae's VAE; a flow on the 2-D data,
    and a flow whose density is one pass (not ``slow_density``) and that has a peer (:data:`FLOW_PEERS`)
    also on the 8x8 digits as 64-D vectors, where the peers' vector flows run too."""
    cards = registry()
    native = [(name, "mnist" if card.latent_kind == "vae" else "toy2d", "native") for name, card in cards.items()]
    vectors = [
        (name, "digits", "vector")
        for name, card in cards.items()
        if card.latent_kind == "flow" and not card.facts.get("slow_density") and name in FLOW_PEERS
    ]
    return native + vectors


@dataclass
class Side:
    """One implementation under test: what one training step, one sampling call and one
    density call do, and how many parameters it has."""

    name: str
    module: nn.Module
    loss: Callable[[Tensor], Tensor]
    sample: Callable[[int], Tensor]
    density: Callable[[Tensor], Tensor]
    prepare: Callable[[Tensor], Tensor]  # data batch -> what loss and density take


# --- our models ---------------------------------------------------------------------------------


def ours(model_name: str, data_shape: tuple[int, ...], levels: int | None, options: dict) -> Side:
    model = build_model(model_name, data_shape, levels, options)
    discrete = getattr(model, "discrete", False)
    noise = torch.Generator().manual_seed(1)
    return Side(
        "vaeflow",
        model,
        model.loss,
        lambda n: model.sample(n),
        model.log_prob,
        lambda x: model_input(x, levels, discrete, noise),
    )


# --- peers ---------------------------------------------------------------------------------------


def pythae_vae(data_shape: tuple[int, ...], levels: int, options: dict, hidden: int, iaf: bool) -> Side:
    """pythae's VAE (or VAE_IAF) with MLP encoder and decoder of the given width and our likelihood.

    pythae scores a reconstruction by squared error or binary cross-entropy, neither a likelihood
    of discrete pixels; so that the two sides compute the same model, its ``loss_function`` is
    replaced by the negative ELBO with our discretised-logistic ``p(x|z)`` (the decoder gives a
    mean and a log-scale per pixel, :func:`vaeflow.models.vae.logistic_parameters`) and its own
    KL term, and its sampling draws from that likelihood. Everything else (encoder/decoder calls,
    reparameterisation, pythae's IAF flow, ``ModelOutput`` plumbing) is pythae's. With our VAE's
    weights copied in (same widths), the peer's VAE loss is ours for the same noise (a test checks it).
    """
    from pythae.models import VAE, VAE_IAF, VAE_IAF_Config, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    features, latent, layers = math.prod(data_shape), options["latent_dim"], options["layers"]

    def negative_log_likelihood(recon_x: Tensor, x: Tensor) -> Tensor:
        mean, log_scale = logistic_parameters(recon_x, levels)
        return -discretized_logistic_log_prob(x.flatten(1), mean, log_scale, levels).sum(-1)

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp(features, 2 * latent, hidden, layers)  # our VAE's own MLP

        def forward(self, x: Tensor) -> ModelOutput:
            # as ours: levels rescaled to [-1, 1], and the second half read as log σ (pythae's log σ² = 2 log σ)
            mu, log_std = self.net(2.0 * x.flatten(1) / (levels - 1) - 1.0).chunk(2, dim=1)
            return ModelOutput(embedding=mu, log_covariance=2.0 * log_std)

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp(latent, 2 * features, hidden, layers)

        def forward(self, z: Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=self.net(z))

    class LogisticVAE(VAE):
        def loss_function(self, recon_x, x, mu, log_var, z):  # type: ignore[no-untyped-def]
            recon_loss = negative_log_likelihood(recon_x, x)
            kld = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp(), dim=-1)
            return (recon_loss + kld).mean(dim=0), recon_loss.mean(dim=0), kld.mean(dim=0)

    class LogisticVAE_IAF(VAE_IAF):
        def loss_function(self, recon_x, x, mu, log_var, z0, zk, log_abs_det_jac):  # type: ignore[no-untyped-def]
            recon_loss = negative_log_likelihood(recon_x, x)
            log_q_z0 = (-0.5 * (log_var + torch.pow(z0 - mu, 2) / torch.exp(log_var))).sum(dim=1)
            kld = log_q_z0 - (-0.5 * torch.pow(zk, 2)).sum(dim=1) - log_abs_det_jac
            return (recon_loss + kld).mean(dim=0), recon_loss.mean(dim=0), kld.mean(dim=0)

    if iaf:
        config = VAE_IAF_Config(
            input_dim=data_shape,
            latent_dim=latent,
            n_made_blocks=options["iaf_steps"],
            n_hidden_in_made=2,
            hidden_size=options["iaf_hidden"],
        )
        model = LogisticVAE_IAF(config, encoder=Encoder(), decoder=Decoder())
    else:
        model = LogisticVAE(VAEConfig(input_dim=data_shape, latent_dim=latent), encoder=Encoder(), decoder=Decoder())

    def sample(n: int) -> Tensor:
        mean, log_scale = logistic_parameters(model.decoder(torch.randn(n, latent))["reconstruction"], levels)
        return discretized_logistic_sample(mean, log_scale, levels).view(n, *data_shape)

    name = "pythae " + ("VAE_IAF" if iaf else "VAE")
    return Side(
        name, model, lambda x: model({"data": x}).loss, sample, lambda x: -model({"data": x}).loss, lambda x: x.float()
    )


def normflows_realnvp(
    features: int, levels: int | None, hidden: int, layers: int, transforms: int
) -> peers.PeerDensity:
    """normflows' Real NVP: MaskedAffineFlow with alternating masks, separate s and t MLPs."""
    import normflows as nf

    mask = torch.tensor([i % 2 for i in range(features)], dtype=torch.float32)
    flows = []
    for i in range(transforms):
        s = nf.nets.MLP([features] + [hidden] * layers + [features], init_zeros=True)
        t = nf.nets.MLP([features] + [hidden] * layers + [features], init_zeros=True)
        flows.append(nf.flows.MaskedAffineFlow(mask if i % 2 == 0 else 1 - mask, t, s))
    model = nf.NormalizingFlow(nf.distributions.DiagGaussian(features, trainable=False), flows)
    return peers.PeerDensity(model.log_prob, model, levels)


def _flow_sampler(peer: peers.PeerDensity) -> Callable[[int], Tensor]:
    module = peer.module
    if hasattr(module, "q0"):  # normflows
        return lambda n: module.sample(n)[0]
    return lambda n: module().sample((n,))  # zuko


#: our vector-flow options -> (peer builder, peer library name, peer size before width matching)
FLOW_PEERS: dict[str, tuple[Callable[..., peers.PeerDensity], str, Callable[[dict], dict]]] = {
    "realnvp": (
        normflows_realnvp,
        "normflows MaskedAffineFlow",
        lambda o: {"hidden": o["hidden"], "layers": o["mlp_layers"], "transforms": o["coupling_layers"]},
    ),
    "glow": (
        peers.peer_glow,
        "normflows ActNorm+LULinearPermute+AffineCouplingBlock",
        lambda o: {"hidden": o["hidden"], "layers": o["mlp_layers"], "transforms": o["vector_steps"]},
    ),
    "maf": (
        peers.peer_maf,
        "zuko.flows.MAF",
        lambda o: {"hidden": o["hidden"], "layers": o["layers"], "transforms": o["blocks"]},
    ),
    "iaf": (
        peers.peer_iaf,
        "zuko LazyInverse(MaskedAutoregressiveTransform)",
        lambda o: {"hidden": o["hidden"], "layers": o["layers"], "transforms": o["blocks"]},
    ),
    "ffjord": (
        peers.peer_ffjord,
        "zuko.flows.CNF",
        lambda o: {"hidden": o["hidden"], "layers": o["layers"], "transforms": 1},
    ),
}


#: our VAEs -> whether their pythae peer is VAE_IAF (else VAE)
VAE_PEERS: dict[str, bool] = {"vae": False, "vae_iaf": True}


def peer_side(
    model_name: str, data_shape: tuple[int, ...], levels: int | None, options: dict, target: int
) -> Side | None:
    """The peer library's side of ``model_name``'s row, matched to ``target`` parameters; None for a
    model no peer library implements (Flow++, or one added to the study since)."""
    if model_name in VAE_PEERS:
        iaf = VAE_PEERS[model_name]

        def params(hidden: int) -> int:
            return peers.count_parameters(pythae_vae(data_shape, levels, options, hidden, iaf).module)

        hidden = peers.nearest_width(params, target, options["hidden"])
        return pythae_vae(data_shape, levels, options, hidden, iaf)
    if model_name not in FLOW_PEERS:
        return None
    builder, name, size = FLOW_PEERS[model_name]
    features = math.prod(data_shape)
    matched = peers.match_size(builder, features, levels, size(options), target)
    peer = builder(features, levels, **matched)
    noise = torch.Generator().manual_seed(1)
    return Side(
        name, peer, peer.loss, _flow_sampler(peer), peer.log_prob, lambda x: model_input(x, levels, False, noise)
    )


# --- timing --------------------------------------------------------------------------------------


def per_call(fn: Callable[[], object], min_time: float, min_calls: int = 3, max_calls: int = 50) -> float:
    """Median seconds per call of ``fn`` over at least ``min_calls`` calls and ``min_time`` seconds."""
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_calls and (len(times) < min_calls or time.perf_counter() - started < min_time):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_step(side: Side, batches: list[Tensor], fused: bool) -> Callable[[], None]:
    """One training step of ``side`` on the next of ``batches``, with the study's Adam (torch's
    fused kernel, :func:`vaeflow.training.engine.adam`) or torch's default Adam."""
    parameters = list(side.module.parameters())
    optimizer = adam(parameters, 1e-4, torch.device("cpu")) if fused else torch.optim.Adam(parameters, lr=1e-4)
    state = {"i": 0}

    def step() -> None:
        y = batches[state["i"] % len(batches)]
        state["i"] += 1
        loss = side.loss(y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def step_flops(side: Side, y: Tensor) -> int:
    """Matmul and convolution FLOPs of one forward and backward pass, counted with torch's own
    FLOP formulas (``torch.utils.flop_counter.flop_registry``) on every dispatched op.

    ``FlopCounterMode`` itself cannot be used: its per-module tracking breaks inside
    ``torch.autograd.grad``, which FFJORD's trace calls during the forward pass.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                Count.total += int(formula(*args, **kwargs, out_val=out))
            return out

    with Count():
        side.loss(y).backward()
    side.module.zero_grad(set_to_none=True)
    return Count.total


def matmul_peak(n: int = 1024, reps: int = 20) -> float:
    """FLOP/s of the best of ``reps`` ``n×n`` fp32 matmuls on the current torch threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(reps))
    return 2 * n**3 / best


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def benchmark_pair(
    model_name: str, dataset: str, shape: str, config: dict, data_dir: Path, reps: int, min_time: float, n: int
) -> dict:
    run = run_config(config, dataset, model_name, 0)
    data = load_prepared(data_dir / f"{dataset}.npz")
    train, test = data.train, data.test
    options = dict(run["options"])
    levels = data.levels
    if shape == "vector":  # the vector architecture (the study's toy2d options) on flattened images
        options = {**options, **run_config(config, "toy2d", model_name, 0)["options"]}
        train, test = train.reshape(len(train), -1), test.reshape(len(test), -1)
    data_shape = tuple(train.shape[1:])
    if shape == "native" and run.get("parameter_budget"):  # the width the study trains it at
        options = fit_to_budget(model_name, data_shape, levels, options, run["parameter_budget"])
    batch = int(run["training"]["batch_size"])
    torch.manual_seed(0)
    our = ours(model_name, data_shape, levels, options)
    target = peers.count_parameters(our.module)
    torch.manual_seed(0)
    peer = peer_side(model_name, data_shape, levels, options, target)
    sides = [our] + ([peer] if peer is not None else [])

    order = torch.Generator().manual_seed(0)
    x_train, x_test = to_tensor(train), to_tensor(test[:n])
    raw = [x_train[torch.randint(len(x_train), (batch,), generator=order)] for _ in range(8)]
    prepared = {s.name: [s.prepare(x) for x in raw] for s in sides}
    density_in = {s.name: s.prepare(x_test) for s in sides}
    if hasattr(our.module, "initialize"):
        with torch.no_grad():
            our.module.initialize(prepared[our.name][0])
    for s in sides:
        s.module.train()
    # ours with the study's optimizer; the peer as its library trains (torch's default Adam:
    # pythae's trainer, and the examples of normflows and zuko, which have no trainer) and,
    # so that the model code alone is compared, with the study's optimizer too
    steps = {"ours": train_step(our, prepared[our.name], fused=True)}
    if peer is not None:
        steps["peer"] = train_step(peer, prepared[peer.name], fused=False)
        steps["peer_same_optimizer"] = train_step(peer, prepared[peer.name], fused=True)
    for step in steps.values():  # warm-up: first calls allocate and pick kernels
        step()

    timings: dict[str, dict[str, list[float]]] = {s.name: {"step": [], "sample": [], "density": []} for s in sides}
    same_optimizer: list[float] = []
    for _ in range(reps):
        for key, step in steps.items():
            seconds = per_call(step, min_time)
            if key == "peer_same_optimizer":
                same_optimizer.append(seconds)
            else:
                timings[(our if key == "ours" else peer).name]["step"].append(seconds)
        for s in sides:
            s.module.eval()
            with torch.no_grad():
                timings[s.name]["sample"].append(per_call(lambda s=s: s.sample(n), min_time, min_calls=1))
                timings[s.name]["density"].append(
                    per_call(lambda s=s: s.density(density_in[s.name]), min_time, min_calls=1)
                )
            s.module.train()

    our.module.train()
    flops = step_flops(our, prepared[our.name][0])
    result: dict = {
        "model": model_name,
        "dataset": dataset,
        "data": f"{dataset} as {len(x_test[0].flatten())}-D vectors" if shape == "vector" else dataset,
        "data_shape": list(data_shape),
        "batch_size": batch,
        "examples_per_call": n,
        "reps": reps,
        "options": options,
    }
    for label, s in (("ours", our), ("peer", peer)):
        if s is None:
            result["peer"] = None
            continue
        t = {k: statistics.median(v) for k, v in timings[s.name].items()}
        result[label] = {
            "implementation": s.name,
            "parameters": peers.count_parameters(s.module),
            "step_time_s": t["step"],
            "samples_per_s": n / t["sample"],
            "density_evals_per_s": n / t["density"],
            "step_time_reps_s": timings[s.name]["step"],
        }
    result["ours"]["step_flops"] = flops
    result["ours"]["achieved_flop_per_s"] = flops / result["ours"]["step_time_s"]
    if peer is not None:
        result["peer"]["step_time_same_optimizer_s"] = statistics.median(same_optimizer)
        result["step_time_ratio"] = result["ours"]["step_time_s"] / result["peer"]["step_time_s"]
        result["step_time_ratio_same_optimizer"] = (
            result["ours"]["step_time_s"] / result["peer"]["step_time_same_optimizer_s"]
        )
        result["sample_time_ratio"] = result["peer"]["samples_per_s"] / result["ours"]["samples_per_s"]
        result["density_time_ratio"] = result["peer"]["density_evals_per_s"] / result["ours"]["density_evals_per_s"]
    return result


def left_out_step(model_name: str, dataset: str, config: dict, data_dir: Path, reps: int, min_time: float) -> dict:
    """One training step of a model on a dataset the study leaves it out of (``models.<m>.left_out``),
    at the width the study would train it at there: what leaving it out saved, per step."""
    block = config["models"][model_name]
    data = load_prepared(data_dir / f"{dataset}.npz")
    options = {**block.get("options", {}), **(block.get("dataset_options") or {}).get(dataset, {})}
    budget = (config.get("parameter_budget") or {}).get(dataset)
    if budget:
        options = fit_to_budget(model_name, data.example_shape, data.levels, options, budget)
    batch = int({**config["training"], **block.get("training", {})}["batch_size"])
    torch.manual_seed(0)
    our = ours(model_name, tuple(data.example_shape), data.levels, options)
    order = torch.Generator().manual_seed(0)
    x_train = to_tensor(data.train)
    raw = [x_train[torch.randint(len(x_train), (batch,), generator=order)] for _ in range(2)]
    batches = [our.prepare(x) for x in raw]
    if hasattr(our.module, "initialize"):
        with torch.no_grad():
            our.module.initialize(batches[0])
    our.module.train()
    step = train_step(our, batches, fused=True)
    step()  # warm-up
    times = [per_call(step, min_time, min_calls=1, max_calls=3) for _ in range(reps)]
    return {
        "model": model_name,
        "dataset": dataset,
        "parameters": peers.count_parameters(our.module),
        "batch_size": batch,
        "step_time_s": statistics.median(times),
        "step_time_reps_s": times,
        "reason": " ".join(block["left_out"][dataset].split()),
    }


def read_config(value: str) -> dict:
    """``--config``: the config as JSON text (what the workflow passes) or a YAML file's path.

    JSON text is read as JSON, not as YAML: YAML 1.1 reads a number without a dot, such as the
    ``1e-06`` that JSON writes for the MNIST logit squeeze, as a string."""
    import yaml

    if value.lstrip().startswith("{"):
        return json.loads(value)
    return yaml.safe_load(Path(value).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config",
        default="config/config.yaml",
        help="the study config (model sizes, batch size): a YAML file, or the config as JSON text",
    )
    parser.add_argument("--data-dir", default="results/data", help="the study's prepared datasets")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions (median reported)")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per timed measurement (at least)")
    parser.add_argument("--examples", type=int, default=500, help="samples and density evaluations per call")
    parser.add_argument("--only", nargs="*", default=None, help="only these models")
    parser.add_argument("--out", default="results/benchmarks", help="writes OUT/speed.json and OUT/speed.md")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the study's jobs use 1)")
    parser.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help="write only this JSON (one part of the benchmark, e.g. one model's; see --merge)",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="PART_JSON",
        help="combine parts written with --json into OUT/speed.json and OUT/speed.md, without timing",
    )
    args = parser.parse_args(argv)
    if args.merge:
        return merge([Path(p) for p in args.merge], Path(args.out))
    config = read_config(args.config)
    torch.set_num_threads(args.threads)

    peak = matmul_peak()
    rows, skipped = [], []
    for model_name, dataset, shape in pairs():
        if args.only and model_name not in args.only:
            continue
        try:
            run_config(config, dataset, model_name, 0)
            if shape == "vector":
                run_config(config, "toy2d", model_name, 0)
        except ConfigError as error:  # a study without this model or dataset
            skipped.append(f"{model_name} on {dataset}: {error}")
            continue
        row = benchmark_pair(
            model_name, dataset, shape, config, Path(args.data_dir), args.reps, args.min_time, args.examples
        )
        row["ours"]["fraction_of_peak"] = row["ours"]["achieved_flop_per_s"] / peak
        rows.append(row)
        print(_line(row), flush=True)
    left_out = []
    for model_name, block in config.get("models", {}).items():
        if args.only and model_name not in args.only:
            continue
        for dataset in block.get("left_out") or {}:
            if (Path(args.data_dir) / f"{dataset}.npz").exists():
                left_out.append(
                    left_out_step(model_name, dataset, config, Path(args.data_dir), args.reps, args.min_time)
                )
                print(
                    f"{model_name} on {dataset} (left out of the study): "
                    f"{left_out[-1]['step_time_s']:.3f} s per training step",
                    flush=True,
                )
            else:
                skipped.append(
                    f"{model_name} on {dataset} (left out of the study): no prepared {dataset}.npz in {args.data_dir}"
                )
    result = {
        "settings": {
            **{k: v for k, v in vars(args).items() if k not in ("config", "merge")},
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
        },
        "matmul_peak_flop_per_s": peak,
        "results": rows,
        "left_out": left_out,
        "skipped": skipped,
    }
    if args.json:
        write_json_atomic(Path(args.json), result)
        print(f"wrote {args.json}")
        return 0
    out = Path(args.out)
    write_json_atomic(out / "speed.json", result)
    write_text_atomic(out / "speed.md", summary(result))
    print(f"wrote {out / 'speed.json'} and {out / 'speed.md'}")
    return 0


def merge(parts: list[Path], out: Path) -> int:
    """One benchmark from its parts: their rows in the order of :func:`pairs`, the median of
    their matmul peaks (each row's share of the peak recomputed against it)."""
    import json

    loaded = [json.loads(p.read_text(encoding="utf-8")) for p in parts]
    keys = ("reps", "min_time", "examples", "threads", "torch")
    for part, path in zip(loaded[1:], parts[1:]):
        if any(part["settings"][k] != loaded[0]["settings"][k] for k in keys):
            raise ValueError(
                f"{path} was timed with other settings than {parts[0]} ({', '.join(keys)} must agree); rerun it"
            )
    peak = statistics.median(part["matmul_peak_flop_per_s"] for part in loaded)
    order = {(m, d): i for i, (m, d, _) in enumerate(pairs())}
    rows = sorted((r for part in loaded for r in part["results"]), key=lambda r: order[(r["model"], r["dataset"])])
    for r in rows:
        r["ours"]["fraction_of_peak"] = r["ours"]["achieved_flop_per_s"] / peak
    settings = {
        **{k: v for k, v in loaded[0]["settings"].items() if k not in ("only", "json")},
        "parts": [str(p) for p in parts],
    }
    result = {
        "settings": settings,
        "matmul_peak_flop_per_s": peak,
        "matmul_peak_per_part_flop_per_s": [part["matmul_peak_flop_per_s"] for part in loaded],
        "results": rows,
        "left_out": [r for part in loaded for r in part.get("left_out", [])],
        "skipped": [line for part in loaded for line in part["skipped"]],
    }
    write_json_atomic(out / "speed.json", result)
    write_text_atomic(out / "speed.md", summary(result))
    print(f"wrote {out / 'speed.json'} and {out / 'speed.md'} from {len(parts)} part(s)")
    return 0


def _line(row: dict) -> str:
    text = f"{row['model']:8s} {row['data']:22s} ours {1000 * row['ours']['step_time_s']:7.2f} ms/step"
    if row.get("peer"):
        text += (
            f" | {row['peer']['implementation']} {1000 * row['peer']['step_time_s']:7.2f} ms/step"
            f" | step ratio {row['step_time_ratio']:.2f}, sample ratio {row['sample_time_ratio']:.2f}, "
            f"density ratio {row['density_time_ratio']:.2f}"
        )
    return text


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def summary(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"Medians of {s['reps']} interleaved repetitions, torch {s['torch']} on {s['threads']} thread(s); "
        "ratios are ours / peer time (< 1: ours is faster). Samples and density evaluations: "
        f"{s['examples']} per call. fp32 matmul peak on this thread count: "
        f"{result['matmul_peak_flop_per_s'] / 1e9:.1f} GFLOP/s.",
        "",
        "| model | data | ours params | peer | peer params | ours ms/step | peer ms/step | step ratio | "
        "ours samples/s | peer samples/s | sample ratio | "
        "ours density evals/s | peer density evals/s | density ratio | "
        "ours GFLOP/s | % of matmul peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        o, p = r["ours"], r.get("peer")
        peer_cells = (
            [p["implementation"], str(p["parameters"]), f"{1000 * p['step_time_s']:.2f}"] if p else ["none", "–", "–"]
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    r["model"],
                    r["data"],
                    str(o["parameters"]),
                    *peer_cells[:2],
                    f"{1000 * o['step_time_s']:.2f}",
                    peer_cells[2],
                    _ratio(r.get("step_time_ratio")),
                    f"{o['samples_per_s']:.0f}",
                    f"{p['samples_per_s']:.0f}" if p else "–",
                    _ratio(r.get("sample_time_ratio")),
                    f"{o['density_evals_per_s']:.0f}",
                    f"{p['density_evals_per_s']:.0f}" if p else "–",
                    _ratio(r.get("density_time_ratio")),
                    f"{o['achieved_flop_per_s'] / 1e9:.2f}",
                    f"{100 * o['fraction_of_peak']:.1f}",
                ]
            )
            + " |"
        )
    for r in result.get("left_out", []):
        lines.append(
            f"\nLeft out of the study: {r['model']} on {r['dataset']}, {r['parameters']:,} parameters: "
            f"{r['step_time_s']:.3f} s per training step of {r['batch_size']} examples."
        )
    for line in result["skipped"]:
        lines.append(f"\nNot benchmarked: {line}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
