"""Our flows against the same family from a peer library, side by side.

Each pair is trained with one loop (Adam, same learning rate, same batches in the same
order, same step budget, same seeds) on the same data, the peer's hidden width chosen so
its parameter count is nearest ours, then scored on the same held-out set. Reported per
pair: test bits/dim of both (mean ± sd over ``--seeds`` seeds; the seed-to-seed spread is
as large as most differences between the sides), their ratio (ours / peer; < 1 means ours
is better) per seed and of the means, and the ratio of median step times.

Peers (pinned in pyproject.toml): zuko for Real NVP,
MAF, IAF and FFJORD (zuko's CNF); normflows for Glow. No peer library implements Flow++,
so it has no row.

    python benchmarks/peers.py                    # toy2d (two moons) and digits (64-D)
    python benchmarks/peers.py --steps 300 --families maf iaf --datasets toy2d
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from vaeflow.data import build_dataset
from vaeflow.data.dequantization import model_input, to_tensor
from vaeflow.evaluation.bits import bits_per_dim
from vaeflow.io import write_json_atomic, write_text_atomic
from vaeflow.models import build_model
from vaeflow.models.capacity import nearest_width
from vaeflow.models.transforms import LogitPreprocess


class PeerDensity(nn.Module):
    """A peer library's flow as a density on our input space.

    On image data the peer sees the same logit-space variable as our flows (our
    LogitPreprocess, whose log-det — with its −D·log K — is added), so both densities
    are over the same dequantised levels and their bits/dim compare directly.
    """

    def __init__(
        self, log_prob: Callable[[Tensor], Tensor], module: nn.Module, levels: int | None, alpha: float = 0.05
    ):
        super().__init__()
        self.module = module
        self._log_prob = log_prob
        self.preprocess = LogitPreprocess(levels, alpha) if levels is not None else None

    def log_prob(self, y: Tensor) -> Tensor:
        if self.preprocess is None:
            return self._log_prob(y)
        h, logdet = self.preprocess(y)
        return self._log_prob(h.flatten(1)) + logdet

    def loss(self, y: Tensor) -> Tensor:
        return -self.log_prob(y).mean()


def _zuko(flow: nn.Module, levels: int | None) -> PeerDensity:
    return PeerDensity(lambda x: flow().log_prob(x), flow, levels)


def peer_realnvp(features: int, levels: int | None, hidden: int, layers: int, transforms: int) -> PeerDensity:
    import zuko

    return _zuko(zuko.flows.RealNVP(features, transforms=transforms, hidden_features=[hidden] * layers), levels)


def peer_maf(features: int, levels: int | None, hidden: int, layers: int, transforms: int) -> PeerDensity:
    import zuko

    return _zuko(zuko.flows.MAF(features, transforms=transforms, hidden_features=[hidden] * layers), levels)


def peer_iaf(features: int, levels: int | None, hidden: int, layers: int, transforms: int) -> PeerDensity:
    from zuko.distributions import DiagNormal
    from zuko.flows import Flow, LazyInverse, MaskedAutoregressiveTransform, UnconditionalDistribution

    steps = [
        LazyInverse(MaskedAutoregressiveTransform(features, hidden_features=[hidden] * layers))
        for _ in range(transforms)
    ]
    base = UnconditionalDistribution(DiagNormal, torch.zeros(features), torch.ones(features), buffer=True)
    return _zuko(Flow(steps, base), levels)


def peer_ffjord(features: int, levels: int | None, hidden: int, layers: int, transforms: int) -> PeerDensity:
    import zuko

    return _zuko(zuko.flows.CNF(features, hidden_features=[hidden] * layers), levels)


def peer_glow(features: int, levels: int | None, hidden: int, layers: int, transforms: int) -> PeerDensity:
    import normflows as nf

    flows = []
    for _ in range(transforms):
        net = nf.nets.MLP([features // 2] + [hidden] * layers + [2 * (features - features // 2)], init_zeros=True)
        flows += [
            nf.flows.ActNorm((features,)),
            nf.flows.LULinearPermute(features),
            nf.flows.AffineCouplingBlock(net, scale_map="sigmoid"),
        ]
    model = nf.NormalizingFlow(nf.distributions.DiagGaussian(features, trainable=False), flows)
    return PeerDensity(model.log_prob, model, levels)


# family -> (our model name, our options, peer builder, peer name, peer size arguments)
FAMILIES: dict[str, tuple[str, dict, Callable[..., PeerDensity], str, dict]] = {
    "realnvp": (
        "realnvp",
        {"coupling_layers": 8, "hidden": 64, "mlp_layers": 2},
        peer_realnvp,
        "zuko.flows.RealNVP",
        {"hidden": 64, "layers": 2, "transforms": 8},
    ),
    "maf": (
        "maf",
        {"blocks": 5, "hidden": 64, "layers": 2},
        peer_maf,
        "zuko.flows.MAF",
        {"hidden": 64, "layers": 2, "transforms": 5},
    ),
    "iaf": (
        "iaf",
        {"blocks": 5, "hidden": 64, "layers": 2},
        peer_iaf,
        "zuko LazyInverse(MaskedAutoregressiveTransform)",
        {"hidden": 64, "layers": 2, "transforms": 5},
    ),
    "ffjord": (
        "ffjord",
        {"hidden": 64, "layers": 3, "trace": "exact"},
        peer_ffjord,
        "zuko.flows.CNF",
        {"hidden": 64, "layers": 3, "transforms": 1},
    ),
    "glow": (
        "glow",
        {"hidden": 64, "mlp_layers": 2, "vector_steps": 6, "logit_alpha": 0.05},
        peer_glow,
        "normflows ActNorm+LULinearPermute+AffineCouplingBlock",
        {"hidden": 64, "layers": 2, "transforms": 6},
    ),
}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def match_size(builder: Callable[..., PeerDensity], features: int, levels: int | None, size: dict, target: int) -> dict:
    """The peer's size arguments with the hidden width whose parameter count is nearest ours.

    Layer count and number of transforms stay as given (the same as ours); only the width
    moves, so the two sides compare at a comparable parameter count.
    """

    def params(hidden: int) -> int:
        return count_parameters(builder(features, levels, **{**size, "hidden": hidden}))

    return {**size, "hidden": nearest_width(params, target, size["hidden"])}


def train_and_score(
    model: nn.Module, x_train: Tensor, x_test: Tensor, levels: int | None, steps: int, batch: int, seed: int, lr: float
) -> dict[str, float]:
    """One loop for both sides: same batches, same noise, same optimiser; median step time."""
    order = torch.Generator().manual_seed(seed)
    noise = torch.Generator().manual_seed(seed + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    times = []
    model.train()
    for step in range(steps):
        idx = torch.randint(len(x_train), (batch,), generator=order)
        y = model_input(x_train[idx], levels, False, noise)
        if step == 0 and hasattr(model, "initialize"):
            with torch.no_grad():
                model.initialize(y)
        started = time.perf_counter()
        loss = model.loss(y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
        if not math.isfinite(float(loss.detach())):
            return {
                "test_bits_per_dim": float("nan"),
                "step_time_s": statistics.median(times),
                "diverged_at": step,
                "parameters": count_parameters(model),
            }
    model.eval()
    generator = torch.Generator().manual_seed(seed + 2)
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(x_test), 500):
            y = model_input(x_test[start : start + 500], levels, False, generator)
            total += float(model.log_prob(y).sum())
    dims = x_test[0].numel()
    return {
        "test_bits_per_dim": float(bits_per_dim(total / len(x_test), dims)),
        "step_time_s": statistics.median(times[5:] or times),
        "parameters": count_parameters(model),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per pair; bits/dim are averaged over them")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--datasets", nargs="*", default=["toy2d", "digits"])
    parser.add_argument("--out", default="results/benchmarks")
    parser.add_argument(
        "--resummarise",
        action="store_true",
        help="recompute the summary (paired differences, ratios, markdown) from OUT/peers.json without training",
    )
    parser.add_argument(
        "--merge",
        nargs="*",
        default=[],
        metavar="PEERS_JSON",
        help="with --resummarise: add the per-seed results of these peers.json files (other seeds of the "
        "same pairs and step budget) to OUT's rows",
    )
    args = parser.parse_args(argv)
    if args.resummarise:
        return resummarise(Path(args.out), [Path(m) for m in args.merge])
    torch.set_num_threads(1)

    rows = []
    for dataset in args.datasets:
        options = {"density": "two_moons"} if dataset == "toy2d" else {}
        data = build_dataset(dataset, options, 0)
        flat = (lambda a: a.reshape(len(a), -1)) if data.levels is not None else (lambda a: a)  # digits as 64-D vectors
        x_train, x_test = to_tensor(flat(data.train)), to_tensor(flat(data.test))
        features = x_train.shape[1]
        for family in args.families:
            ours_name, ours_options, peer_builder, peer_name, peer_size = FAMILIES[family]
            if family in ("ffjord", "iaf") and dataset != "toy2d":
                # 64-D: a CNF solve, or IAF's D sequential passes per step, cost minutes per
                # hundred steps on this CPU for both sides; these families are compared on 2-D
                continue
            matched = match_size(
                peer_builder,
                features,
                data.levels,
                peer_size,
                count_parameters(build_model(ours_name, (features,), data.levels, ours_options)),
            )
            runs = {"ours": [], "peer": []}
            for seed in range(args.seed, args.seed + args.seeds):
                # both sides built and trained under the same seed, alternating, so a slow
                # moment of the machine lands on both
                torch.manual_seed(seed)
                ours = build_model(ours_name, (features,), data.levels, ours_options)
                torch.manual_seed(seed)
                peer = peer_builder(features, data.levels, **matched)
                for side, model in (("ours", ours), ("peer", peer)):
                    runs[side].append(
                        train_and_score(model, x_train, x_test, data.levels, args.steps, args.batch, seed, args.lr)
                    )
            result = summarise(family, dataset, features, args.steps, peer_name, runs)
            result["peer_size"] = matched
            result["seed_list"] = list(range(args.seed, args.seed + args.seeds))
            rows.append(result)
            write_results(Path(args.out), args, rows)  # after every pair: a long run keeps what it measured
            print(
                f"{family:8s} {dataset:7s} ours {result['ours_bpd_mean']:.3f}±{result['ours_bpd_sd']:.3f} bpd "
                f"({result['ours_parameters']} params, {1000 * result['ours_step_time_s']:.1f} ms/step) | "
                f"{peer_name}: {result['peer_bpd_mean']:.3f}±{result['peer_bpd_sd']:.3f} bpd "
                f"({result['peer_parameters']} params, {1000 * result['peer_step_time_s']:.1f} ms/step) | "
                f"bpd ratio {result['bpd_ratio']:.3f}, step-time ratio {result['step_time_ratio']:.2f}",
                flush=True,
            )

    print(f"wrote {Path(args.out) / 'peers.json'} and {Path(args.out) / 'peers.md'}")
    return 0


def summarise(family: str, dataset: str, features: int, steps: int, peer: str, runs: dict[str, list[dict]]) -> dict:
    """Mean ± sd of test bits/dim over seeds, median step time, and the ours/peer ratios of both.

    A diverged run's NaN stays in the mean, so a pair with a divergence shows NaN, not a
    flattering average of the survivors.
    """
    result: dict = {
        "family": family,
        "dataset": dataset,
        "features": features,
        "steps": steps,
        "peer": peer,
        "seeds": len(runs["ours"]),
    }
    for side, scored in runs.items():
        bpd = [r["test_bits_per_dim"] for r in scored]
        result[f"{side}_bpd_per_seed"] = bpd
        result[f"{side}_bpd_mean"] = statistics.fmean(bpd)
        result[f"{side}_bpd_sd"] = statistics.stdev(bpd) if len(bpd) > 1 else 0.0
        result[f"{side}_step_time_s"] = statistics.median(r["step_time_s"] for r in scored)
        result[f"{side}_parameters"] = scored[0].get("parameters")
        result[f"{side}_diverged"] = sum("diverged_at" in r for r in scored)
    result["bpd_ratio"] = result["ours_bpd_mean"] / result["peer_bpd_mean"]
    result["bpd_ratio_per_seed"] = [a / b for a, b in zip(result["ours_bpd_per_seed"], result["peer_bpd_per_seed"])]
    # paired by seed (same batches, same noise): the difference and its standard error say
    # whether a ratio near 1 is a real difference or seed noise
    diffs = [a - b for a, b in zip(result["ours_bpd_per_seed"], result["peer_bpd_per_seed"])]
    result["bpd_diff_mean"] = statistics.fmean(diffs)
    result["bpd_diff_se"] = (
        statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None
    )  # one seed: none
    result["step_time_ratio"] = result["ours_step_time_s"] / result["peer_step_time_s"]
    return result


def resummarise(out: Path, merge: list[Path] | None = None) -> int:
    """Rewrite peers.json and peers.md from the per-seed numbers already in peers.json, with
    the per-seed results of the ``merge`` files added to the rows of the same pair.

    A merged row's step time is the median over its seeds, each seed carrying its run's
    median step time (per-step times are not stored).
    """
    import json

    stored = json.loads((out / "peers.json").read_text(encoding="utf-8"))

    def seed_list(row: dict, settings: dict) -> list[int]:
        return row.get("seed_list") or list(range(settings["seed"], settings["seed"] + len(row["ours_bpd_per_seed"])))

    def per_seed(row: dict, settings: dict) -> dict[int, dict[str, dict]]:
        return {
            seed: {
                side: {
                    "test_bits_per_dim": row[f"{side}_bpd_per_seed"][i],
                    "step_time_s": row[f"{side}_step_time_s"],
                    "parameters": row[f"{side}_parameters"],
                }
                for side in ("ours", "peer")
            }
            for i, seed in enumerate(seed_list(row, settings))
        }

    extra: dict[tuple, dict[int, dict]] = {}
    for path in merge or []:
        other = json.loads(path.read_text(encoding="utf-8"))
        for row in other["results"]:
            extra.setdefault((row["family"], row["dataset"], row["steps"]), {}).update(per_seed(row, other["settings"]))
    rows = []
    for row in stored["results"]:
        seeds = per_seed(row, stored["settings"])
        for seed, result in extra.pop((row["family"], row["dataset"], row["steps"]), {}).items():
            seeds.setdefault(seed, result)  # a seed already in the row is the same run: kept once
        order = sorted(seeds)
        runs = {side: [seeds[seed][side] for seed in order] for side in ("ours", "peer")}
        for side in ("ours", "peer"):
            row[f"{side}_step_time_s"] = statistics.median(r["step_time_s"] for r in runs[side])
        fresh = summarise(row["family"], row["dataset"], row["features"], row["steps"], row["peer"], runs)
        fresh["seed_list"] = order
        rows.append({**row, **{k: v for k, v in fresh.items() if k not in ("ours_diverged", "peer_diverged")}})
    if extra:
        raise ValueError(f"merged results with no matching pair in {out / 'peers.json'}: {sorted(extra)}")
    write_results(out, argparse.Namespace(**stored["settings"]), rows)
    print(f"rewrote {out / 'peers.json'} and {out / 'peers.md'} from the stored per-seed results")
    return 0


def _se(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def write_results(out: Path, args: argparse.Namespace, rows: list[dict]) -> None:
    write_json_atomic(out / "peers.json", {"settings": vars(args), "results": rows})
    lines = [
        f"Test bits/dim: mean ± sd over the seeds of each pair, {args.steps} steps each; ratios are ours / peer "
        "(< 1: ours is better or faster).",
        "",
        "| family | dataset | seeds | ours params | ours bits/dim | peer | peer params | peer bits/dim | bpd ratio "
        "| per-seed ratios | ours − peer (paired, ± se) | ours ms/step | peer ms/step | step-time ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_seed = ", ".join(f"{x:.3f}" for x in r["bpd_ratio_per_seed"])
        lines.append(
            f"| {r['family']} | {r['dataset']} | {len(r['ours_bpd_per_seed'])} | {r['ours_parameters']} | "
            f"{r['ours_bpd_mean']:.3f} ± {r['ours_bpd_sd']:.3f} | "
            f"{r['peer']} | {r['peer_parameters']} | {r['peer_bpd_mean']:.3f} ± {r['peer_bpd_sd']:.3f} | "
            f"{r['bpd_ratio']:.3f} | {per_seed} | "
            f"{r['bpd_diff_mean']:+.4f} ± {_se(r['bpd_diff_se'])} | {1000 * r['ours_step_time_s']:.1f} | "
            f"{1000 * r['peer_step_time_s']:.1f} | {r['step_time_ratio']:.2f} |"
        )
    write_text_atomic(out / "peers.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
