"""Codebook sampling (DSR): never the original code, k nearest by strength, only inside the mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asdflow.errors import DetectorError
from asdflow.simulation.codebook_sampling import (
    codebook_anomaly,
    level_region,
    neighbour_count,
    perturb_codes,
    sample_replacement_indices,
)
from asdflow.simulation.masks import sample_mask
from asdflow.simulation.vqvae2 import VQVAE2, VectorQuantizerEMA


@pytest.fixture(scope="module")
def vqvae() -> VQVAE2:
    torch.manual_seed(0)
    model = VQVAE2(32, hidden=8, embedding_dim=4, n_codes_top=16, n_codes_bottom=16).eval()
    rng = np.random.default_rng(0)
    model.set_scaler([rng.normal(-40, 5, (32, 64)).astype(np.float32)])
    return model


def _quantiser(n_codes: int = 16, seed: int = 0) -> VectorQuantizerEMA:
    torch.manual_seed(seed)
    return VectorQuantizerEMA(n_codes, 3).eval()


def test_neighbour_count_follows_the_strength():
    assert neighbour_count(0.0, 64) == 1
    assert neighbour_count(0.5, 64) == 32
    assert neighbour_count(1.0, 64) == 63  # every code but the original


def test_replacements_are_never_the_original_code_and_stay_inside_the_region():
    quantiser = _quantiser()
    rng = np.random.default_rng(1)
    indices = torch.from_numpy(rng.integers(0, 16, (3, 6, 7)))
    region = torch.from_numpy(rng.uniform(size=(3, 6, 7)) < 0.5)
    for strength in (0.01, 0.3, 1.0):
        new = sample_replacement_indices(quantiser, indices, region, [strength] * 3, rng)
        assert torch.all(new[region] != indices[region])
        assert torch.equal(new[~region], indices[~region])


def test_replacements_are_among_the_k_nearest_codes():
    quantiser = _quantiser()
    distances = torch.cdist(quantiser.embedding, quantiser.embedding)
    distances.fill_diagonal_(float("inf"))
    rng = np.random.default_rng(2)
    indices = torch.from_numpy(rng.integers(0, 16, (1, 20, 20)))
    region = torch.ones_like(indices, dtype=torch.bool)
    # the weakest strength: always the nearest other code
    new = sample_replacement_indices(quantiser, indices, region, [0.01], rng)
    assert torch.equal(new, distances.argmin(1)[indices])
    # strength 0.25 -> k = 4: the chosen code ranks among the 4 nearest others, and several ranks occur
    new = sample_replacement_indices(quantiser, indices, region, [0.25], rng)
    ranks = (distances[indices.flatten()] < distances[indices.flatten(), new.flatten()][:, None]).sum(1)
    assert int(ranks.max()) <= 3 and len(ranks.unique()) > 1


def test_level_region_keeps_small_masks():
    mask = torch.zeros(1, 32, 16, dtype=torch.bool)
    mask[0, 3, 5] = True  # one cell: under half of any grid cell, still perturbed somewhere
    assert level_region(mask, 8).sum() == 1 and level_region(mask, 4).sum() == 1
    assert level_region(torch.zeros_like(mask), 4).sum() == 0


def test_codebook_anomaly_changes_only_inside_the_mask(vqvae):
    rng = np.random.default_rng(3)
    spec = rng.normal(-40, 5, (32, 45)).astype(np.float32)  # 45 frames: not a multiple of 8
    mask = sample_mask((32, 45), "band_segments", 0.3, rng)
    anomalous, changed = codebook_anomaly(vqvae, spec, mask, rng, strength=0.8)
    assert anomalous.shape == spec.shape and changed.shape == spec.shape and changed.dtype == bool
    assert changed.any()
    assert np.array_equal(anomalous[~changed], spec[~changed])
    assert not np.allclose(anomalous[changed], spec[changed])
    # changed cells are whole code cells over the mask: every changed 8x8 top cell meets the mask
    cells = np.pad(changed, ((0, 0), (0, 3))).reshape(4, 8, 6, 8).any(axis=(1, 3))
    touched = np.pad(mask, ((0, 0), (0, 3))).reshape(4, 8, 6, 8).any(axis=(1, 3))
    assert np.all(touched[cells])
    assert changed.sum() < 0.9 * changed.size


def test_codebook_anomaly_on_aligned_mask_and_empty_mask(vqvae):
    rng = np.random.default_rng(4)
    spec = rng.normal(-40, 5, (32, 32)).astype(np.float32)
    mask = np.zeros((32, 32), dtype=bool)
    mask[8:16, 16:24] = True  # exactly one top cell and four bottom cells
    _, changed = codebook_anomaly(vqvae, spec, mask, rng)
    assert np.array_equal(changed, mask)
    same, nothing = codebook_anomaly(vqvae, spec, np.zeros_like(mask), rng)
    assert not nothing.any() and np.array_equal(same, spec)


def test_codebook_anomaly_is_reproducible_from_the_rng(vqvae):
    spec = np.random.default_rng(5).normal(-40, 5, (32, 32)).astype(np.float32)
    mask = sample_mask((32, 32), "perlin", 0.4, np.random.default_rng(6))
    first = codebook_anomaly(vqvae, spec, mask, np.random.default_rng(7))
    second = codebook_anomaly(vqvae, spec, mask, np.random.default_rng(7))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_perturb_codes_per_level(vqvae):
    rng = np.random.default_rng(8)
    x = torch.randn(2, 1, 32, 32)
    codes = vqvae.encode(x)
    masks = torch.ones(2, 32, 32, dtype=torch.bool)
    top, bottom, changed = perturb_codes(vqvae, codes, masks, [0.5, 0.5], rng, [("top",), ("bottom",)])
    new_top = vqvae.quantizer_top.quantize(top)[1]
    new_bottom = vqvae.quantizer_bottom.quantize(bottom)[1]
    assert torch.all(new_top[0] != codes.top_indices[0]) and torch.equal(new_top[1], codes.top_indices[1])
    assert torch.equal(new_bottom[0], codes.bottom_indices[0]) and torch.all(new_bottom[1] != codes.bottom_indices[1])
    assert changed.all()


def test_bad_inputs_are_clear_errors(vqvae):
    rng = np.random.default_rng(0)
    spec = np.zeros((32, 16), dtype=np.float32)
    with pytest.raises(DetectorError, match="equal 2-D shapes"):
        codebook_anomaly(vqvae, spec, np.zeros((32, 8), dtype=bool), rng)
    with pytest.raises(DetectorError, match="expects 32 mels"):
        codebook_anomaly(vqvae, np.zeros((16, 16), dtype=np.float32), np.zeros((16, 16), dtype=bool), rng)
    with pytest.raises(DetectorError, match="strength"):
        codebook_anomaly(vqvae, spec, np.zeros_like(spec, dtype=bool), rng, strength=1.5)
    with pytest.raises(DetectorError, match="levels"):
        codebook_anomaly(vqvae, spec, np.zeros_like(spec, dtype=bool), rng, levels=("middle",))


def test_codebook_method_of_simulate():
    from asdflow.detectors.family_configs import AudDSRConfig
    from asdflow.simulation.codebook_sampling import build_codebook_simulator
    from asdflow.simulation.simulate import METHODS

    assert METHODS["codebook"] == "asdflow.simulation.codebook_sampling:build_codebook_simulator"
    rng = np.random.default_rng(9)
    images = rng.normal(0, 1, (6, 32, 24)).astype(np.float32)
    tiny = AudDSRConfig(hidden_channels=8, embedding_dim=4, n_codes_top=8, n_codes_bottom=8, vq_steps=3, vq_batch_size=2)
    simulator = build_codebook_simulator(images, None, seed=0, auddsr=tiny)
    masks = np.stack([sample_mask((32, 24), "perlin", 0.3, rng) for _ in range(2)])
    simulated = simulator.simulate(images[:2], masks, rng)
    assert simulated.shape == (2, 32, 24) and np.isfinite(simulated).all()
    assert not np.array_equal(simulated, images[:2])
    # cells far from every mask cell (outside the 8x8 top cells the mask meets) stay exactly as they were
    far = ~masks.reshape(2, 4, 8, 3, 8).any(axis=(2, 4)).repeat(8, axis=1).repeat(8, axis=2)
    assert np.array_equal(simulated[far], images[:2][far])
