"""bits/dim against hand-computed values (docs/design.md, "Likelihood accounting")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaeflow.evaluation.bits import bits_per_dim


def test_uniform_density_on_level_cube_gives_log2_k() -> None:
    # Uniform density 1/K^D on [0, K)^D (level units): log p = -D·log K, so bits/dim = log2 K.
    for levels, num_dims in [(256, 784), (256, 196), (256, 1), (17, 64)]:
        log_p = -num_dims * math.log(levels)
        assert bits_per_dim(log_p, num_dims) == pytest.approx(math.log2(levels), rel=1e-12)
    assert bits_per_dim(-784 * math.log(256), 784) == pytest.approx(8.0, rel=1e-12)


def test_discrete_uniform_over_17_levels() -> None:
    # Mass 1/17 per pixel on an 8x8 digit: log P = -64·log 17, bits/dim = log2 17 = 4.0874628...
    log_p = -64 * math.log(17)
    assert bits_per_dim(log_p, 64) == pytest.approx(4.087462841250339, rel=1e-12)


def test_worked_number() -> None:
    # By hand: a 28x28 image with log p = -1000 nats.
    # D·ln 2 = 784 × 0.6931471805599453 = 554.5177444479562 - 11.090354888959125 = 543.4273895589971
    # bits/dim = 1000 / 543.4273895589971 = 1.840172...
    assert bits_per_dim(-1000.0, 784) == pytest.approx(1.840172, abs=5e-7)
    # and exactly 3 bits/dim when log p = -3·D·ln 2
    assert bits_per_dim(-3 * 10 * math.log(2), 10) == pytest.approx(3.0, rel=1e-15)


def test_array_and_tensor_inputs_are_elementwise() -> None:
    log_p = [-784 * math.log(256), -1000.0]
    expected = [8.0, 1000 / (784 * math.log(2))]
    as_numpy = bits_per_dim(np.array(log_p), 784)
    assert isinstance(as_numpy, np.ndarray)
    np.testing.assert_allclose(as_numpy, expected, rtol=1e-12)
    as_tensor = bits_per_dim(torch.tensor(log_p, dtype=torch.float64), 784)
    assert isinstance(as_tensor, torch.Tensor)
    torch.testing.assert_close(as_tensor, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("num_dims", [0, -3, 2.5, True])
def test_invalid_num_dims(num_dims: object) -> None:
    with pytest.raises(ValueError, match="num_dims"):
        bits_per_dim(-1.0, num_dims)  # type: ignore[arg-type]
