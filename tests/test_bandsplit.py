from __future__ import annotations

import torch

from bsmamba2_plugin.network.bandsplit import BandSplit, MaskEstimator, ScaledL2Norm


def test_band_split_maps_each_band_to_one_token() -> None:
    widths = (8, 16, 8)
    split = BandSplit(4, widths)
    out = split(torch.randn(2, 5, sum(widths)))
    assert out.shape == (2, 5, 3, 4)
    # band 1 sees only its own 16 features
    x = torch.randn(1, 1, 32)
    y = x.clone()
    y[..., 8:24] += 1.0
    diff = (split(x) - split(y)).abs().sum(-1)[0, 0]
    assert diff[0] == 0 and diff[2] == 0 and diff[1] > 0


def test_mask_estimator_returns_every_feature_and_official_names() -> None:
    widths = (8, 12)
    est = MaskEstimator(4, widths, depth=2)
    assert est(torch.randn(2, 3, 2, 4)).shape == (2, 3, 20)
    names = set(est.state_dict())
    assert {"to_freqs.0.0.0.weight", "to_freqs.0.0.2.weight", "to_freqs.1.0.2.bias"} <= names
    assert est.to_freqs[0][0][0].out_features == 16  # hidden = 4 x dim
    assert est.to_freqs[1][0][2].out_features == 24  # 2 x d_k before the GLU


def test_scaled_l2_norm_is_rms_normalisation() -> None:
    x = torch.randn(3, 10, dtype=torch.float64)
    norm = ScaledL2Norm(10).double()
    expected = x / x.square().mean(-1, keepdim=True).sqrt()
    assert torch.allclose(norm(x), expected)
