import numpy as np
import pytest
import torch

from asdflow.simulation.config import SimulationConfig
from asdflow.simulation.latent_perturbation import (
    build_latent_simulator, latent_spread, perturb_latents, project_shell,
)
from asdflow.simulation.masks import perlin_mask
from asdflow.torch_threads import torch_threads


def _config(**perturbation):
    return SimulationConfig.model_validate({
        "autoencoder": {"channels": [4, 8], "latent_channels": 4, "epochs": 3, "batch_size": 8},
        "perturbation": {"steps": 4, **perturbation},
    })


def _patches(n=16):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((1, 32, 16)) + 0.3 * rng.standard_normal((n, 32, 16))).astype(np.float32)


def test_project_shell_keeps_norms_between_the_radii():
    delta = torch.stack([torch.full((2, 3), v) for v in (0.01, 0.5, 10.0)])
    norms = project_shell(delta, 0.5, 2.0).flatten(1).norm(dim=1)
    assert torch.all(norms >= 0.5 - 1e-5) and torch.all(norms <= 2.0 + 1e-5)
    assert torch.isclose(norms[1], delta[1].norm())  # inside the shell: unchanged


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):  # two spinning OpenMP threads on a busy 2-core machine are many times slower
        yield


def test_perturbation_stays_in_the_shell_and_raises_the_reconstruction_loss():
    config = _config(radius_min=0.5, radius_max=1.0)
    patches = _patches()
    simulator = build_latent_simulator(patches, config, seed=0)
    model, (r_min, r_max) = simulator.model, simulator.radii
    assert simulator.spread == latent_spread(model, patches) > 0
    x = torch.from_numpy(patches)[:, None]
    with torch.no_grad():
        z = model.encode(x)
    z_new = perturb_latents(model, x, z, r_min, r_max, config.autoencoder, config.perturbation,
                            torch.Generator().manual_seed(0))
    distance = (z_new - z).flatten(1).norm(dim=1)
    assert torch.all(distance >= r_min * 0.999) and torch.all(distance <= r_max * 1.001)
    from asdflow.simulation.autoencoder import reconstruction_loss

    with torch.no_grad():
        before = reconstruction_loss(model.decode(z, (32, 16)), x, config.autoencoder, reduce=False)
        after = reconstruction_loss(model.decode(z_new, (32, 16)), x, config.autoencoder, reduce=False)
        # a random direction of the same length raises it less (ascent, not noise)
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
        noise = noise * (distance / noise.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
        random = reconstruction_loss(model.decode(z + noise, (32, 16)), x, config.autoencoder, reduce=False)
    assert torch.all(after > before)
    assert after.mean() > random.mean()


def test_overlay_changes_only_the_masked_cells_and_is_deterministic():
    patches = _patches(6)
    for overlay in ("replace", "residual"):
        simulator = build_latent_simulator(patches, _config(overlay=overlay), seed=0)
        rng = np.random.default_rng(0)
        masks = np.stack([perlin_mask((32, 16), 0.2, rng) for _ in patches])
        a = simulator.simulate(patches, masks, np.random.default_rng(5))
        b = simulator.simulate(patches, masks, np.random.default_rng(5))
        c = simulator.simulate(patches, masks, np.random.default_rng(6))
        assert np.array_equal(a, b) and not np.array_equal(a, c)
        assert np.array_equal(a[~masks], patches[~masks])
        changed = a[masks] != patches[masks]
        assert changed.mean() > 0.9
        if overlay == "replace":  # the decoded patch replaces x: a large change
            assert np.abs(a[masks] - patches[masks]).mean() > 0.05
