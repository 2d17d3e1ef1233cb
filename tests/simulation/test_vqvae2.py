"""VQ-VAE-2: quantiser shapes and gradients, EMA codebook behaviour, the two levels, seeded training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asdflow.errors import DetectorError
from asdflow.torch_threads import torch_threads
from asdflow.simulation.vqvae2 import VQVAE2, VectorQuantizerEMA, pad_to_multiple, random_crops, train_vqvae2


def _specs(n: int = 4, n_mels: int = 32, frames: int = 40, seed: int = 0) -> list[np.ndarray]:
    """Log-mel-like clips in dB: two bands whose levels swing slowly in opposite phase, over noise."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        swing = 20.0 * np.sin(np.arange(frames) / 4.0 + rng.uniform(0, 6))
        spec = -60.0 + rng.normal(0, 1, (n_mels, frames))
        spec[4:10] += swing
        spec[20:26] -= swing
        clips.append(spec.astype(np.float32))
    return clips


def _model(seed: int = 0, **kwargs) -> VQVAE2:
    torch.manual_seed(seed)
    settings = dict(hidden=8, embedding_dim=4, n_codes_top=8, n_codes_bottom=8)
    settings.update(kwargs)
    return VQVAE2(32, **settings)


def test_quantiser_shapes_codes_and_straight_through_gradient():
    torch.manual_seed(0)
    quantiser = VectorQuantizerEMA(16, 4).eval()
    z = torch.randn(2, 4, 3, 5, requires_grad=True)
    quantized, loss, indices = quantiser(z)
    assert quantized.shape == z.shape and indices.shape == (2, 3, 5) and loss.ndim == 0
    assert int(indices.min()) >= 0 and int(indices.max()) < 16
    # the forward value is the nearest code of each vector
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    nearest = torch.cdist(flat, quantiser.embedding).argmin(1)
    assert torch.equal(indices.reshape(-1), nearest)
    assert torch.allclose(quantized.detach(), quantiser.lookup(indices))
    # straight-through: d(sum q)/dz = 1 everywhere; the commitment loss pulls z towards its code
    quantized.sum().backward(retain_graph=True)
    assert torch.allclose(z.grad, torch.ones_like(z))
    z.grad = None
    loss.backward()
    assert torch.allclose(z.grad, 0.25 * 2 * (z - quantized).detach() / z.numel(), atol=1e-6)


def test_ema_update_pulls_codes_to_data_and_keeps_unused_codes_finite():
    torch.manual_seed(0)
    quantiser = VectorQuantizerEMA(8, 2, decay=0.9).train()
    data = torch.tensor([3.0, -3.0])[None, :, None, None].expand(4, 2, 2, 2).contiguous()
    for _ in range(60):
        quantiser(data)
    distance = (quantiser.embedding - torch.tensor([3.0, -3.0])).norm(dim=1).min()
    assert distance < 0.05
    assert torch.isfinite(quantiser.embedding).all() and quantiser.embedding.abs().max() < 10


def test_two_levels_shapes_and_gradients_reach_the_encoder():
    model = _model()
    x = torch.randn(2, 1, 32, 16)
    reconstruction, codes = model(x)
    assert reconstruction.shape == x.shape
    assert codes.top.shape == (2, 4, 4, 2) and codes.top_indices.shape == (2, 4, 2)
    assert codes.bottom.shape == (2, 4, 8, 4) and codes.bottom_indices.shape == (2, 8, 4)
    loss = torch.nn.functional.mse_loss(reconstruction, x) + codes.loss
    loss.backward()
    assert model.encoder_bottom[0].weight.grad.abs().sum() > 0
    assert model.encoder_top[0].weight.grad.abs().sum() > 0


def test_training_is_seeded():
    specs = _specs()
    runs = []
    for _ in range(2):
        model = _model(seed=3)
        with torch_threads(1):
            losses = train_vqvae2(model, specs, steps=8, batch_size=4, crop_frames=16, seed=5)
        runs.append((losses, model.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    other = _model(seed=3)
    with torch_threads(1):
        assert train_vqvae2(other, specs, steps=8, batch_size=4, crop_frames=16, seed=6) != runs[0][0]


def test_training_learns_the_spectrograms():
    model = _model(seed=3)
    with torch_threads(1):
        losses = train_vqvae2(model, _specs(), steps=60, batch_size=8, crop_frames=16, learning_rate=1e-2, seed=5)
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])
    assert not model.training  # left in eval mode, ready to encode


def test_scaler_round_trip_and_data_helpers():
    model = _model()
    specs = _specs(frames=20)
    model.set_scaler(specs)
    x = torch.from_numpy(specs[0])
    assert torch.allclose(model.destandardise(model.standardise(x)), x, atol=1e-4)
    assert pad_to_multiple(specs[0]).shape == (32, 24)
    crops = random_crops(specs, 32, 5, np.random.default_rng(0))  # longer than the clips: edge-padded
    assert crops.shape == (5, 1, 32, 32) and np.isfinite(crops).all()


def test_bad_shapes_are_clear_errors():
    with pytest.raises(DetectorError, match="n_mels divisible by 8"):
        VQVAE2(30)
    with pytest.raises(DetectorError, match="multiple of 8"):
        train_vqvae2(_model(), _specs(), steps=1, crop_frames=12)
    with pytest.raises(DetectorError, match="at least 2 codes"):
        VectorQuantizerEMA(1, 4)
