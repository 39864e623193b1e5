"""NICE: non-linear independent components estimation (Dinh, Krueger & Bengio 2015).

The worked example of docs/adding.md (tests/test_adding_a_model.py copies it into
``src/vaeflow/models/`` of a copy of the project and runs the smoke study with it). On the
flattened input ``h`` (in logit space on images, :class:`~vaeflow.models.transforms.LogitPreprocess`),
``couplings`` additive coupling layers (eq. 4–5 of the paper) alternate which half of the
coordinates they change, by index parity::

    h_b ← h_b + m_i(h_a),        log|det| = 0,

each ``m_i`` an MLP with ReLU units, and a diagonal scaling closes the flow (§3.3)::

    z = exp(s) ⊙ h,              log|det| = Σ_j s_j.

The base is the study's standard normal (the paper also tried a logistic prior).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaeflow.models.flow import Flow
from vaeflow.models.options import check_count, check_levels, check_positive, check_rank
from vaeflow.models.transforms import LogitPreprocess


class NICE(Flow):
    """NICE density model; ``exact = True``, ``discrete = False``.

    Options: ``couplings`` [4] additive coupling layers, each an MLP of ``layers`` [2] hidden
    layers of ``hidden`` [64] units; ``logit_alpha`` [0.05] of the logit pre-processing on images.
    """

    label = "NICE"
    year = 2015  # Dinh, Krueger & Bengio, NICE: non-linear independent components estimation

    def __init__(
        self,
        data_shape: tuple[int, ...],
        levels: int | None,
        couplings: int = 4,
        hidden: int = 64,
        layers: int = 2,
        logit_alpha: float = 0.05,
    ) -> None:
        super().__init__(data_shape, levels)
        check_rank("nice", self.data_shape)
        check_levels("nice", self.levels)
        couplings, hidden, layers = (
            check_count("nice", name, value)
            for name, value in (("couplings", couplings), ("hidden", hidden), ("layers", layers))
        )
        check_positive("nice", "logit_alpha", logit_alpha)
        self.preprocess = None if self.levels is None else LogitPreprocess(self.levels, logit_alpha)
        parity = torch.arange(self.num_dims) % 2
        self.register_buffer("parity", parity)
        self.nets = nn.ModuleList()
        for i in range(couplings):
            changed = int((parity == i % 2).sum())
            sizes = [self.num_dims - changed] + [hidden] * layers
            net = nn.Sequential(*(m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), nn.ReLU())))
            net.append(nn.Linear(sizes[-1], changed))
            self.nets.append(net)
        self.log_scale = nn.Parameter(torch.zeros(self.num_dims))

    def _halves(self, i: int) -> tuple[Tensor, Tensor]:
        changed = self.parity == i % 2
        return ~changed, changed

    def forward_and_logdet(self, y: Tensor) -> tuple[Tensor, Tensor]:
        h, logdet = self.preprocessed(y)
        h = h.flatten(1)
        for i, net in enumerate(self.nets):
            kept, changed = self._halves(i)
            h = h.clone()
            h[:, changed] = h[:, changed] + net(h[:, kept])
        return h * torch.exp(self.log_scale), logdet + self.log_scale.sum()

    def inverse(self, z: Tensor) -> Tensor:
        h = z * torch.exp(-self.log_scale)
        for i in reversed(range(len(self.nets))):
            kept, changed = self._halves(i)
            h = h.clone()
            h[:, changed] = h[:, changed] - self.nets[i](h[:, kept])
        return self.unpreprocessed(h.view(-1, *self.data_shape))
