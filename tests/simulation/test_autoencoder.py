import numpy as np
import torch

from asdflow.simulation.autoencoder import SpectrogramAutoencoder, reconstruction_loss, ssim, train_autoencoder
from asdflow.simulation.config import EncoderDecoderConfig
from asdflow.torch_threads import torch_threads


def test_ssim_is_one_for_identical_images_and_drops_with_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 32, 24, generator=g)
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-5)
    noisy = x + 0.5 * torch.randn(x.shape, generator=g)
    very_noisy = x + 2.0 * torch.randn(x.shape, generator=g)
    s_noisy, s_very = ssim(x, noisy), ssim(x, very_noisy)
    assert torch.all(s_very < s_noisy) and torch.all(s_noisy < 1)
    # structure, not just intensity: a contrast change hurts SSIM less than shuffling the pixels
    shuffled = x.flatten(2)[..., torch.randperm(32 * 24, generator=g)].view_as(x)
    assert torch.all(ssim(x, 0.8 * x) > 0.9) and torch.all(ssim(x, shuffled) < 0.2)


def test_autoencoder_handles_sides_not_divisible_and_learns():
    params = EncoderDecoderConfig(channels=[4, 8], latent_channels=4, epochs=15, batch_size=8, learning_rate=3e-3)
    model = SpectrogramAutoencoder.from_config(params)
    x = torch.zeros(2, 1, 30, 17)
    assert model(x).shape == x.shape
    assert model.encode(x).shape == (2, 4, 8, 5)
    # smooth random images: the loss falls with training
    rng = np.random.default_rng(0)
    base = rng.standard_normal((1, 32, 16))
    patches = (base + 0.1 * rng.standard_normal((24, 32, 16))).astype(np.float32)
    with torch_threads(1):  # two spinning OpenMP threads on a busy 2-core machine: 50x slower
        trained, history = train_autoencoder(patches, params, seed=0)
    assert history[-1] < history[0] * 0.9
    assert not any(p.requires_grad for p in trained.parameters())
    data = torch.from_numpy(patches)[:, None]
    assert float(reconstruction_loss(trained(data), data, params)) < history[0]


def test_ssim_matches_the_2d_gaussian_window_definition():
    from torch.nn import functional as F

    from asdflow.simulation.autoencoder import gaussian_window

    g = gaussian_window(7, 1.5)
    kernel = (g[:, None] * g[None, :])[None, None]

    def blur(t):
        return F.conv2d(F.pad(t, (3, 3, 3, 3), mode="replicate"), kernel)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 30, 17, generator=gen)
    y = x + 0.5 * torch.randn(x.shape, generator=gen)
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * 4.0) ** 2, (0.03 * 4.0) ** 2
    reference = (((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).flatten(1).mean(1)
    assert torch.allclose(ssim(x, y), reference, atol=1e-5)
