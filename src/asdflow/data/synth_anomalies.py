"""Anomaly kinds of the synthetic generator, each a physically motivated fault.

Every kind returns the *difference* it makes to the machine sound (anomalous
machine minus normal machine). `apply_anomaly` scales that difference so its
energy relative to the machine's follows the severity:

    ratio_db = RATIO_DB_AT_0 + severity * (RATIO_DB_AT_1 - RATIO_DB_AT_0) + RATIO_OFFSET_DB[kind]

from -40 dB (inaudible) at severity 0 to +5 dB (dominant) at 1: monotone and
smooth. The small per-kind offset evens out how detectable each kind is at one
severity. Additive faults (impacts, squeal) are their own difference; faults that
change the machine (modulation, flow change) are the change itself, so one scale
fits all.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from asdflow.data.synth_physics import (
    MachineProfile,
    MachineSignal,
    MachineVariant,
    OperatingPoint,
    crossings,
    harmonic_table,
    render_machine,
    ring,
    unit_rms,
    wavetable_read,
)

RATIO_DB_AT_0 = -40.0
RATIO_DB_AT_1 = 5.0


def severity_to_ratio_db(severity: float) -> float:
    """Anomaly-to-machine energy ratio (dB) of a severity in [0, 1]."""
    s = float(np.clip(severity, 0.0, 1.0))
    return RATIO_DB_AT_0 + s * (RATIO_DB_AT_1 - RATIO_DB_AT_0)


class FaultContext:
    """What a fault model may use: the machine, its physics, and how to re-render it."""

    def __init__(
        self,
        machine: MachineSignal,
        profile: MachineProfile,
        op: OperatingPoint,
        sr: int,
        machine_seed: int,
        rng: np.random.Generator,
    ) -> None:
        self.machine = machine
        self.profile = profile
        self.op = op
        self.sr = sr
        self.machine_seed = machine_seed
        self.rng = rng

    @property
    def n(self) -> int:
        return self.machine.wave.shape[0]


def bearing_defect(ctx: FaultContext) -> np.ndarray:
    """A spall on a race: an impulse each time a rolling element passes it (a fixed multiple of
    the rotation, with slip), ringing the bearing housing; an inner-race defect is also
    amplitude-modulated by the rotation as it passes through the load zone."""
    rng = ctx.rng
    order = ctx.profile.bearing_order * rng.uniform(0.97, 1.03)
    cycles = ctx.machine.phase / (2 * np.pi)
    where = crossings(cycles * order + rng.random())
    slip = rng.normal(0.0, 0.01 / (order * ctx.machine.rotation_hz) * ctx.sr, where.size)
    where = np.clip(where + slip.astype(np.int64), 0, ctx.n - 1)
    hits = np.zeros(ctx.n)
    np.add.at(hits, where, rng.uniform(0.7, 1.3, where.size))
    if rng.random() < 0.5:  # inner race: load-zone modulation at the rotation frequency
        hits *= 1.0 + 0.8 * np.cos(ctx.machine.phase + rng.uniform(0, 2 * np.pi))
    freq = ctx.profile.bearing_hz * rng.uniform(0.9, 1.1)
    return ring(hits, ctx.sr, freq, rng.uniform(0.002, 0.006)) + 0.3 * ring(hits, ctx.sr, 1.7 * freq, 0.002)


def imbalance(ctx: FaultContext) -> np.ndarray:
    """A mass off-centre: a once-per-revolution force that raises the 1x (and 2x) harmonic and
    modulates the whole machine sound at the rotation frequency."""
    rng = ctx.rng
    phase = ctx.machine.phase
    modulation = unit_rms(ctx.machine.wave * np.cos(phase + rng.uniform(0, 2 * np.pi)))
    one_x = unit_rms(np.sin(phase + rng.uniform(0, 2 * np.pi)) + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi)))
    return modulation + 0.7 * one_x


def friction_squeal(ctx: FaultContext) -> np.ndarray:
    """Stick-slip at a dry contact: intermittent narrowband high-frequency tone with vibrato."""
    rng, sr, n = ctx.rng, ctx.sr, ctx.n
    duration = n / sr
    episodes = max(1, rng.poisson(0.4 * duration))
    gate = np.zeros(n)
    ramp = int(0.03 * sr)
    for _ in range(episodes):
        length = int(min(duration, rng.uniform(0.2, 1.5)) * sr)
        start = int(rng.integers(0, max(1, n - length)))
        env = np.ones(length)
        r = min(ramp, length // 2)
        if r:
            fade = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, r))
            env[:r] *= fade
            env[-r:] *= fade[::-1]
        gate[start : start + length] = np.maximum(gate[start : start + length], env)
    f_tone = min(ctx.profile.squeal_hz * rng.uniform(0.9, 1.1), 0.4 * sr)
    t = np.arange(n) / sr
    vibrato = 1.0 + rng.uniform(0.01, 0.03) * np.sin(2 * np.pi * rng.uniform(4, 8) * t + rng.uniform(0, 2 * np.pi))
    cycles = np.cumsum(f_tone * vibrato) / sr
    amps = np.array([1.0, 0.4, 0.15])[: max(1, int(0.45 * sr // f_tone))]
    tone = wavetable_read(harmonic_table(amps, rng), cycles)
    return gate * tone


def rattle(ctx: FaultContext) -> np.ndarray:
    """A loose part: irregular impacts, loosely locked to the rotation, plus sub-harmonics (the
    part bouncing every other revolution)."""
    rng, sr, n = ctx.rng, ctx.sr, ctx.n
    cycles = ctx.machine.phase / (2 * np.pi)
    locked = crossings(cycles)
    locked = locked[rng.random(locked.size) < 0.6]
    locked = locked + rng.integers(0, max(1, int(0.1 * sr / ctx.machine.rotation_hz)), locked.size)
    free = rng.integers(0, n, rng.poisson(8.0 * n / sr))  # a minimum rate, for slow machines
    where = np.clip(np.concatenate([locked, free]), 0, n - 1)
    hits = np.zeros(n)
    np.add.at(hits, where, rng.uniform(0.3, 1.5, where.size) * rng.choice([-1.0, 1.0], where.size))
    freq = ctx.profile.rattle_hz * rng.uniform(0.8, 1.2)
    impacts = ring(hits, sr, freq, rng.uniform(0.004, 0.012)) + 0.5 * ring(hits, sr, 2.6 * freq, 0.003)
    sub = wavetable_read(harmonic_table(np.array([1.0, 0.0, 0.6, 0.0, 0.4]), rng), cycles / 2.0)
    return unit_rms(impacts) + 0.5 * sub


def clogging(ctx: FaultContext) -> np.ndarray:
    """A blocked filter or duct: less flow, so the resonances of the flow path move down, the
    broadband noise turns darker and louder (turbulence) and the blade/vane pass tone weakens."""
    rng = ctx.rng
    variant = MachineVariant(
        resonance_scale=rng.uniform(0.8, 0.9),
        tilt_delta=rng.uniform(0.3, 0.6),
        broadband_db_delta=rng.uniform(2.0, 4.0),
        emphasis_db_delta=-rng.uniform(3.0, 6.0),
    )
    changed = render_machine(ctx.profile, ctx.op, ctx.n, ctx.sr, ctx.machine_seed, variant)
    return changed.wave - ctx.machine.wave


FAULTS: dict[str, Callable[[FaultContext], np.ndarray]] = {
    "bearing_defect": bearing_defect,
    "imbalance": imbalance,
    "friction_squeal": friction_squeal,
    "rattle": rattle,
    "clogging": clogging,
}

# Per-kind offsets (dB) on the energy ratio, so that one severity means about the same
# detectability for every kind: impulses and tones in quiet bands are found at far lower
# energy than a modulation of the whole sound. Measured with a per-band log-energy z-score
# detector on fan and pump (the severity giving source AUC ~0.8 per kind).
RATIO_OFFSET_DB: dict[str, float] = {
    "bearing_defect": -4.0,
    "imbalance": 4.0,
    "friction_squeal": -4.0,
    "rattle": 3.0,
    "clogging": -2.0,
}


def apply_anomaly(kind: str, severity: float, ctx: FaultContext) -> np.ndarray:
    """The machine sound with the fault at this severity (machine energy as reference)."""
    if kind not in FAULTS:
        raise ValueError(f"unknown anomaly kind {kind!r}: known are {sorted(FAULTS)}")
    difference = FAULTS[kind](ctx)
    d_energy = float(np.mean(np.square(difference)))
    if d_energy <= 0:
        return ctx.machine.wave.copy()
    m_energy = float(np.mean(np.square(ctx.machine.wave)))
    ratio_db = severity_to_ratio_db(severity) + RATIO_OFFSET_DB[kind]
    gain = np.sqrt(10 ** (ratio_db / 10) * m_energy / d_energy)
    return ctx.machine.wave + gain * difference
