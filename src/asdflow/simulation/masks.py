"""Anomaly masks over a spectrogram (n_mels, n_frames), the AudDSR shapes, with controllable coverage.

- `perlin_mask`: thresholded 2-D Perlin noise. The threshold is the (1 - coverage)
  quantile of the noise, so the fraction of True cells equals `coverage` up to ties
  (exactly round(coverage * size) cells): coverage is controlled, not hoped for.
- `band_segment_mask`: one frequency band times several time segments (a machine
  part that rings at one pitch, now and then). Band height and total segment length
  are chosen so that band_fraction * time_fraction ~= coverage.

Every function draws only from the `rng` it is given (numpy Generator), so a seed
reproduces the mask.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from asdflow.errors import ConfigError

MaskKind = Literal["perlin", "band_segments"]
MASK_KINDS: tuple[str, ...] = ("perlin", "band_segments")


def _check(shape: tuple[int, int], coverage: float) -> tuple[int, int]:
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        raise ConfigError(f"mask shape must be (n_mels, n_frames) with both >= 1, got {tuple(shape)}")
    if not 0.0 < coverage <= 1.0:
        raise ConfigError(f"mask coverage must be in (0, 1], got {coverage}")
    return int(shape[0]), int(shape[1])


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Classic 2-D gradient (Perlin) noise of `shape` with `res` lattice cells per axis."""
    h, w = shape
    ry, rx = max(1, res[0]), max(1, res[1])
    angles = rng.uniform(0.0, 2 * np.pi, size=(ry + 1, rx + 1))
    grads = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    # sample positions in lattice coordinates
    y = np.linspace(0, ry, h, endpoint=False) + 0.5 * ry / h
    x = np.linspace(0, rx, w, endpoint=False) + 0.5 * rx / w
    yy, xx = np.meshgrid(y, x, indexing="ij")
    y0, x0 = np.floor(yy).astype(int), np.floor(xx).astype(int)
    fy, fx = yy - y0, xx - x0

    def corner(dy: int, dx: int) -> np.ndarray:
        g = grads[y0 + dy, x0 + dx]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    uy, ux = _fade(fy), _fade(fx)
    top = corner(0, 0) * (1 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1 - ux) + corner(1, 1) * ux
    return top * (1 - uy) + bottom * uy


def _top_fraction(values: np.ndarray, coverage: float) -> np.ndarray:
    """Boolean mask of the round(coverage * size) largest values (at least one cell)."""
    k = max(1, int(round(coverage * values.size)))
    order = np.argsort(values, axis=None, kind="stable")[::-1][:k]
    mask = np.zeros(values.size, dtype=bool)
    mask[order] = True
    return mask.reshape(values.shape)


def perlin_mask(
    shape: tuple[int, int], coverage: float, rng: np.random.Generator, scale: int = 4
) -> np.ndarray:
    """Thresholded Perlin noise: True on a `coverage` fraction of cells, in smooth blobs.

    `scale` = lattice cells along the longer axis (larger = smaller blobs); the other
    axis gets proportionally fewer, at least one, so blobs stay roughly isotropic in cells.
    """
    h, w = _check(shape, coverage)
    scale = max(1, int(scale))
    longer = max(h, w)
    res = (max(1, round(scale * h / longer)), max(1, round(scale * w / longer)))
    return _top_fraction(perlin_noise((h, w), res, rng), coverage)


def band_segment_mask(
    shape: tuple[int, int], coverage: float, rng: np.random.Generator, n_segments: int = 3
) -> np.ndarray:
    """One frequency band x `n_segments` time segments, covering ~`coverage` of the cells.

    The band's share of the mel axis is drawn in [sqrt(coverage), 1] (so the time share
    needed stays <= 1), the time share follows as coverage / band share and is split into
    `n_segments` non-overlapping segments at random positions.
    """
    h, w = _check(shape, coverage)
    n_segments = max(1, min(int(n_segments), w))
    band_share = rng.uniform(np.sqrt(coverage), 1.0)
    band = int(np.clip(round(band_share * h), 1, h))
    frames_total = int(np.clip(round(coverage * h * w / band), n_segments, w))
    lo = int(rng.integers(0, h - band + 1))
    # split the frames into n_segments lengths >= 1, place them with random gaps between
    cuts = np.sort(rng.choice(np.arange(1, frames_total), size=n_segments - 1, replace=False)) if n_segments > 1 else []
    lengths = np.diff(np.concatenate([[0], cuts, [frames_total]])).astype(int)
    free = w - frames_total
    gaps = rng.multinomial(free, np.ones(n_segments + 1) / (n_segments + 1))
    mask = np.zeros((h, w), dtype=bool)
    t = int(gaps[0])
    for length, gap in zip(lengths, gaps[1:]):
        mask[lo : lo + band, t : t + length] = True
        t += int(length) + int(gap)
    return mask


def sample_mask(shape: tuple[int, int], kind: MaskKind, coverage: float, rng: np.random.Generator) -> np.ndarray:
    """A mask of the given kind; `kind` is "perlin" or "band_segments"."""
    if kind == "perlin":
        return perlin_mask(shape, coverage, rng)
    if kind == "band_segments":
        return band_segment_mask(shape, coverage, rng)
    raise ConfigError(f"unknown mask kind {kind!r}: choose one of {', '.join(MASK_KINDS)}")
