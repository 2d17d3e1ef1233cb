"""Physical sound models of the synthetic generator: machines and their backgrounds.

A machine is a rotating source (the "rotation" of a valve or a slider is its
actuation cycle):
- rotation harmonics with slow speed jitter: an Ornstein-Uhlenbeck random walk
  in frequency, integrated into a phase, read through a band-limited wavetable
  (cost independent of the number of harmonics);
- structural resonances: the harmonics and broadband noise shaped by a few
  resonant band-pass responses (the machine's housing and mounts);
- broadband machine noise (aerodynamic, fluid, friction), cyclostationary: its
  level is modulated at the blade/vane pass rate;
- optional periodic impacts (valve seats, slider end stops, rail joints), each
  ringing a decaying resonator.
A background is pink/brown noise, hum and occasional transient events.

Everything is drawn from a numpy Generator the caller seeds, so a clip is a pure
function of its seed. Stationary noises are shaped in the frequency domain (one
inverse FFT instead of a filter bank): equivalent for stationary noise and fast.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.signal import lfilter

# Wavetable length, a power of two; harmonics up to TABLE_SIZE // 4 stay clean under linear interpolation.
TABLE_SIZE = 8192
CONTROL_RATE = 100.0  # Hz, rate of the slow random walks (speed jitter, level drift)


class Resonance(BaseModel):
    model_config = ConfigDict(frozen=True)

    freq_hz: float
    q: float
    gain_db: float


class MachineProfile(BaseModel):
    """What makes one machine type sound like itself, and how its domains differ."""

    model_config = ConfigDict(frozen=True)

    name: str
    source_speeds_rpm: tuple[int, ...]  # operating speeds (cycles per minute) of the source domain
    target_speeds_rpm: tuple[int, ...]  # other speeds: the target domain's shift
    source_loads: tuple[int, ...]  # load in percent
    target_loads: tuple[int, ...]
    source_background: str
    target_background: str
    harmonic_rolloff: float  # harmonic k has amplitude k**-rolloff (before emphasis and resonances)
    max_harmonic_hz: float
    emphasis_order: int  # blades, vanes, gear teeth: every harmonic of this order is boosted
    emphasis_db: float
    resonances: tuple[Resonance, ...]
    harmonic_db: float  # component levels relative to each other
    broadband_db: float
    impact_db: float  # -inf-like (<= -60) when the machine has no periodic impacts
    broadband_tilt: float  # broadband amplitude slope ~ f**-tilt
    broadband_modulation: float  # depth of the broadband level modulation at the emphasis order
    impact_order: float  # impacts per cycle
    impact_hz: float  # resonance the impacts ring
    impact_decay_s: float
    jitter: float  # relative speed fluctuation (standard deviation)
    jitter_time_s: float  # correlation time of the speed fluctuation
    level_dbfs: float  # RMS level of the machine in the written clip
    bearing_order: float  # bearing defect frequency per revolution (outer/inner race)
    bearing_hz: float  # bearing housing resonance the defect impulses ring
    squeal_hz: float  # friction squeal fundamental
    rattle_hz: float  # resonance of the loose part


class MachineVariant(BaseModel):
    """A change of the machine's physics (used by the flow-change anomaly)."""

    model_config = ConfigDict(frozen=True)

    resonance_scale: float = 1.0  # every structural resonance moves by this factor
    tilt_delta: float = 0.0  # added to broadband_tilt (positive: darker)
    broadband_db_delta: float = 0.0
    emphasis_db_delta: float = 0.0


class OperatingPoint(BaseModel):
    """How the machine runs in one clip (the attributes in its file name, plus hidden spread)."""

    model_config = ConfigDict(frozen=True)

    speed_rpm: float  # the actual mean speed (the nominal one in the name, +-1 %)
    load: float  # percent


class MachineSignal(BaseModel):
    """A rendered machine sound and the kinematics anomalies lock onto."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    wave: np.ndarray  # unit RMS
    phase: np.ndarray  # rotation phase in radians, per sample
    rotation_hz: float  # mean rotation frequency


def _r(lo: float, hi: float, rng: np.random.Generator) -> float:
    return float(rng.uniform(lo, hi))


def _res(*triples: tuple[float, float, float]) -> tuple[Resonance, ...]:
    return tuple(Resonance(freq_hz=f, q=q, gain_db=g) for f, q, g in triples)


# Hand-set profiles for the DCASE machine types; numbers are plausible, not measured.
_KNOWN: dict[str, dict] = {
    "fan": dict(
        source_speeds_rpm=(1200, 1320, 1440), target_speeds_rpm=(1680, 1800),
        source_loads=(40, 60), target_loads=(85,), source_background="factory", target_background="hvac",
        harmonic_rolloff=1.1, max_harmonic_hz=4000, emphasis_order=6, emphasis_db=10,
        resonances=_res((350, 4, 6), (1250, 8, 8), (3100, 10, 5)),
        harmonic_db=0, broadband_db=2, impact_db=-80, broadband_tilt=0.7, broadband_modulation=0.3,
        impact_order=1, impact_hz=2000, impact_decay_s=0.005, jitter=0.004, jitter_time_s=0.5,
        level_dbfs=-26, bearing_order=3.6, bearing_hz=3800, squeal_hz=2800, rattle_hz=900,
    ),
    "pump": dict(
        source_speeds_rpm=(1440, 1560, 1680), target_speeds_rpm=(2100, 2280),
        source_loads=(30, 50), target_loads=(80,), source_background="factory", target_background="street",
        harmonic_rolloff=1.0, max_harmonic_hz=5000, emphasis_order=7, emphasis_db=8,
        resonances=_res((220, 3, 6), (900, 6, 8), (2600, 12, 6)),
        harmonic_db=0, broadband_db=0, impact_db=-80, broadband_tilt=0.9, broadband_modulation=0.2,
        impact_order=1, impact_hz=2000, impact_decay_s=0.005, jitter=0.003, jitter_time_s=0.8,
        level_dbfs=-26, bearing_order=4.2, bearing_hz=4500, squeal_hz=3300, rattle_hz=700,
    ),
    "valve": dict(
        source_speeds_rpm=(60, 80, 100), target_speeds_rpm=(140, 160),
        source_loads=(40, 60), target_loads=(90,), source_background="factory", target_background="street",
        harmonic_rolloff=0.8, max_harmonic_hz=1500, emphasis_order=50, emphasis_db=12,
        resonances=_res((700, 5, 4), (2500, 10, 10), (5200, 12, 6)),
        harmonic_db=-25, broadband_db=-10, impact_db=0, broadband_tilt=0.4, broadband_modulation=0.0,
        impact_order=2, impact_hz=2500, impact_decay_s=0.015, jitter=0.01, jitter_time_s=1.0,
        level_dbfs=-32, bearing_order=3.1, bearing_hz=4200, squeal_hz=3600, rattle_hz=1100,
    ),
    "bearing": dict(
        source_speeds_rpm=(1800, 2100, 2400), target_speeds_rpm=(2880, 3120),
        source_loads=(30, 50), target_loads=(85,), source_background="factory", target_background="hvac",
        harmonic_rolloff=1.3, max_harmonic_hz=3000, emphasis_order=1, emphasis_db=0,
        resonances=_res((500, 4, 4), (1800, 10, 6), (4200, 15, 10)),
        harmonic_db=0, broadband_db=-6, impact_db=-80, broadband_tilt=0.3, broadband_modulation=0.1,
        impact_order=1, impact_hz=2000, impact_decay_s=0.005, jitter=0.002, jitter_time_s=0.5,
        level_dbfs=-28, bearing_order=4.1, bearing_hz=4200, squeal_hz=2500, rattle_hz=1300,
    ),
    "gearbox": dict(
        source_speeds_rpm=(900, 1020, 1140), target_speeds_rpm=(1380, 1500),
        source_loads=(20, 50), target_loads=(90,), source_background="factory", target_background="workshop",
        harmonic_rolloff=0.9, max_harmonic_hz=5000, emphasis_order=23, emphasis_db=16,
        resonances=_res((600, 6, 6), (2300, 10, 8), (4800, 12, 4)),
        harmonic_db=0, broadband_db=-8, impact_db=-80, broadband_tilt=0.6, broadband_modulation=0.15,
        impact_order=1, impact_hz=2000, impact_decay_s=0.005, jitter=0.003, jitter_time_s=0.4,
        level_dbfs=-26, bearing_order=3.3, bearing_hz=3900, squeal_hz=3000, rattle_hz=800,
    ),
    "slider": dict(
        source_speeds_rpm=(40, 50, 60), target_speeds_rpm=(80, 90),
        source_loads=(20, 40), target_loads=(75,), source_background="workshop", target_background="factory",
        harmonic_rolloff=0.6, max_harmonic_hz=3000, emphasis_order=40, emphasis_db=20,
        resonances=_res((400, 4, 4), (1600, 8, 8), (3600, 10, 6)),
        harmonic_db=-6, broadband_db=-4, impact_db=-2, broadband_tilt=0.5, broadband_modulation=0.5,
        impact_order=2, impact_hz=1600, impact_decay_s=0.03, jitter=0.01, jitter_time_s=1.0,
        level_dbfs=-30, bearing_order=3.5, bearing_hz=4400, squeal_hz=2200, rattle_hz=1000,
    ),
    "ToyCar": dict(
        source_speeds_rpm=(6000, 6600, 7200), target_speeds_rpm=(8400, 9000),
        source_loads=(30, 50), target_loads=(80,), source_background="workshop", target_background="street",
        harmonic_rolloff=0.8, max_harmonic_hz=6000, emphasis_order=2, emphasis_db=6,
        resonances=_res((450, 5, 6), (1800, 8, 6), (5000, 8, 4)),
        harmonic_db=0, broadband_db=-4, impact_db=-80, broadband_tilt=0.5, broadband_modulation=0.2,
        impact_order=1, impact_hz=2000, impact_decay_s=0.005, jitter=0.006, jitter_time_s=0.3,
        level_dbfs=-26, bearing_order=3.2, bearing_hz=5200, squeal_hz=3900, rattle_hz=1200,
    ),
    "ToyTrain": dict(
        source_speeds_rpm=(3000, 3600, 4200), target_speeds_rpm=(4800, 5400),
        source_loads=(30, 50), target_loads=(80,), source_background="workshop", target_background="hvac",
        harmonic_rolloff=0.9, max_harmonic_hz=5000, emphasis_order=3, emphasis_db=6,
        resonances=_res((300, 4, 6), (1400, 8, 6), (3800, 10, 4)),
        harmonic_db=0, broadband_db=-3, impact_db=-6, broadband_tilt=0.6, broadband_modulation=0.1,
        impact_order=0.08, impact_hz=1800, impact_decay_s=0.02, jitter=0.008, jitter_time_s=0.5,
        level_dbfs=-27, bearing_order=3.4, bearing_hz=4600, squeal_hz=3400, rattle_hz=950,
    ),
}

BACKGROUNDS = ("factory", "hvac", "street", "workshop")


def stable_int(text: str, bits: int = 32) -> int:
    """A hash of `text` that is the same in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[: bits // 8], "little")


def _hashed_profile(name: str) -> dict:
    """A plausible random machine for a name asdflow has no hand-set profile for."""
    rng = np.random.default_rng(stable_int(f"profile:{name}", 64))
    base = _r(600, 4800, rng)
    source = tuple(int(round(base * f / 10) * 10) for f in (1.0, 1.1, 1.2))
    target = tuple(int(round(base * f / 10) * 10) for f in (1.45, 1.6))
    backgrounds = rng.permutation(BACKGROUNDS)
    res = sorted((_r(150, 6000, rng), _r(3, 12, rng), _r(3, 10, rng)) for _ in range(3))
    return dict(
        source_speeds_rpm=source, target_speeds_rpm=target,
        source_loads=(30, 50), target_loads=(85,),
        source_background=str(backgrounds[0]), target_background=str(backgrounds[1]),
        harmonic_rolloff=_r(0.7, 1.3, rng), max_harmonic_hz=_r(3000, 6000, rng),
        emphasis_order=int(rng.integers(1, 12)), emphasis_db=_r(0, 12, rng),
        resonances=_res(*res),
        harmonic_db=0.0, broadband_db=_r(-8, 2, rng), impact_db=float(rng.choice([-80.0, _r(-10, -2, rng)])),
        broadband_tilt=_r(0.3, 1.0, rng), broadband_modulation=_r(0, 0.4, rng),
        impact_order=float(rng.choice([1.0, 2.0, 0.1])), impact_hz=_r(1000, 3500, rng),
        impact_decay_s=_r(0.005, 0.03, rng), jitter=_r(0.002, 0.01, rng), jitter_time_s=_r(0.3, 1.0, rng),
        level_dbfs=-28.0, bearing_order=_r(3.0, 5.5, rng), bearing_hz=_r(3000, 6000, rng),
        squeal_hz=_r(2000, 4500, rng), rattle_hz=_r(600, 1500, rng),
    )


def machine_profile(machine_type: str, section: str = "00") -> MachineProfile:
    """The profile of a machine type; sections other than "00" are sibling models (shifted resonances)."""
    fields = dict(_KNOWN.get(machine_type) or _hashed_profile(machine_type))
    if section != "00":
        rng = np.random.default_rng(stable_int(f"section:{machine_type}:{section}", 64))
        scale = _r(0.8, 1.2, rng)
        fields["resonances"] = tuple(
            Resonance(freq_hz=r.freq_hz * scale * _r(0.95, 1.05, rng), q=r.q, gain_db=r.gain_db)
            for r in fields["resonances"]
        )
        fields["emphasis_db"] = fields["emphasis_db"] + _r(-3, 3, rng)
        fields["harmonic_rolloff"] = fields["harmonic_rolloff"] * _r(0.9, 1.1, rng)
    return MachineProfile(name=machine_type, **fields)


# --- building blocks -------------------------------------------------------------------------


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x), dtype=np.float64)))


def unit_rms(x: np.ndarray) -> np.ndarray:
    level = rms(x)
    return x / level if level > 0 else x


def db(value: float) -> float:
    """Amplitude factor of a level in dB."""
    return float(10.0 ** (value / 20.0))


def slow_walk(n: int, sr: int, rng: np.random.Generator, std: float, time_s: float) -> np.ndarray:
    """Ornstein-Uhlenbeck process (mean 0, given std and correlation time) at audio rate."""
    n_ctrl = int(np.ceil(n / sr * CONTROL_RATE)) + 2
    a = float(np.exp(-1.0 / (CONTROL_RATE * max(time_s, 1e-3))))
    drive = rng.standard_normal(n_ctrl) * std * np.sqrt(1 - a * a)
    walk = lfilter([1.0], [1.0, -a], drive, zi=[a * rng.standard_normal() * std])[0]
    return np.interp(np.arange(n) * (CONTROL_RATE / sr), np.arange(n_ctrl), walk)


def resonance_gain(freqs: np.ndarray, resonances: tuple[Resonance, ...], scale: float = 1.0) -> np.ndarray:
    """Amplitude response: a flat floor plus second-order band-pass peaks."""
    f = np.maximum(freqs, 1e-3)
    total = np.ones_like(f)
    for r in resonances:
        f0 = r.freq_hz * scale
        total += (db(r.gain_db) - 1.0) / np.sqrt(1.0 + (r.q * (f / f0 - f0 / f)) ** 2)
    return total


def shaped_noise(n: int, sr: int, rng: np.random.Generator, magnitude: np.ndarray | None = None) -> np.ndarray:
    """Gaussian noise with the amplitude spectrum `magnitude` (on rfftfreq(n, 1/sr)); unit RMS."""
    bins = n // 2 + 1
    spectrum = rng.standard_normal(bins) + 1j * rng.standard_normal(bins)
    if magnitude is not None:
        spectrum *= magnitude
    spectrum[0] = 0.0
    return unit_rms(np.fft.irfft(spectrum, n))


def power_law(freqs: np.ndarray, exponent: float, corner_hz: float = 20.0) -> np.ndarray:
    """Amplitude response ~ f**-exponent above a corner (0.5: pink noise, 1.0: brown noise)."""
    return (np.maximum(freqs, corner_hz) / corner_hz) ** -exponent


def wavetable_read(table: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """Read a one-period wavetable at `cycles` (periods, any real) with linear interpolation."""
    size = table.shape[0]  # a power of two, so wrapping is a bit mask
    low = float(np.min(cycles))
    pos = (cycles - np.floor(low) if low < 0 else cycles) * size
    index = pos.astype(np.int64)  # truncation == floor for pos >= 0; far cheaper than np.mod/np.floor
    pos -= index  # now the fraction between table points (in place: fewer large temporaries)
    index &= size - 1
    out = np.take(table, index)
    slope = np.take(np.diff(np.append(table, table[0])), index)
    slope *= pos
    out += slope
    return out


def harmonic_table(amplitudes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One period holding harmonics 1..K with the given amplitudes and random phases; unit RMS."""
    k = min(len(amplitudes), TABLE_SIZE // 4)
    spectrum = np.zeros(TABLE_SIZE // 2 + 1, dtype=np.complex128)
    spectrum[1 : k + 1] = amplitudes[:k] * np.exp(2j * np.pi * rng.random(k))
    return unit_rms(np.fft.irfft(spectrum, TABLE_SIZE))


def ring(impulses: np.ndarray, sr: int, freq_hz: float, decay_s: float) -> np.ndarray:
    """Each impulse rings a damped resonator (a two-pole filter): an impact on a structure."""
    r = float(np.exp(-1.0 / (decay_s * sr)))
    w = 2 * np.pi * min(freq_hz, 0.45 * sr) / sr
    return lfilter([1.0 - r], [1.0, -2 * r * np.cos(w), r * r], impulses)


def crossings(cycles: np.ndarray) -> np.ndarray:
    """Sample indices where a monotone cycle count passes an integer."""
    low = float(np.min(cycles))
    whole = (cycles - np.floor(low) if low < 0 else cycles).astype(np.int64)
    return np.flatnonzero(np.diff(whole) > 0) + 1


# --- the machine -----------------------------------------------------------------------------


def rotation_phase(profile: MachineProfile, op: OperatingPoint, n: int, sr: int, rng: np.random.Generator):
    """(phase in radians per sample, mean rotation Hz): jittered speed integrated into a phase."""
    f_rot = op.speed_rpm / 60.0
    freq = f_rot * (1.0 + slow_walk(n, sr, rng, profile.jitter, profile.jitter_time_s))
    phase = 2 * np.pi * (rng.random() + np.cumsum(freq) / sr)
    return phase, f_rot


@lru_cache(maxsize=64)
def _broadband_shape(profile: MachineProfile, variant: MachineVariant, n: int, sr: int) -> np.ndarray:
    """The structure's response to broadband excitation (cached: the same for every clip of a machine)."""
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    shape = power_law(freqs, profile.broadband_tilt + variant.tilt_delta, 100.0)
    shape = shape * resonance_gain(freqs, profile.resonances, variant.resonance_scale)
    shape.flags.writeable = False
    return shape


def render_machine(
    profile: MachineProfile,
    op: OperatingPoint,
    n: int,
    sr: int,
    seed: int,
    variant: MachineVariant | None = None,
) -> MachineSignal:
    """The machine alone, unit RMS. The same seed with a variant gives the same noise, other physics."""
    v = variant or MachineVariant()
    rng = np.random.default_rng(seed)
    phase, f_rot = rotation_phase(profile, op, n, sr, rng)
    load = op.load / 100.0
    cycles = phase / (2 * np.pi)

    # Harmonics: heavier load drives more energy into the higher harmonics.
    k = np.arange(1, max(2, int(min(profile.max_harmonic_hz, 0.45 * sr) / f_rot)) + 1)
    amps = k ** -(profile.harmonic_rolloff * (1.2 - 0.4 * load))
    amps = amps * np.where(k % profile.emphasis_order == 0, db(profile.emphasis_db + v.emphasis_db_delta), 1.0)
    amps = amps * resonance_gain(k * f_rot, profile.resonances, v.resonance_scale)
    amps = amps * 10 ** (rng.normal(0, 1.5, k.shape) / 20)  # unit-to-unit spread of each harmonic
    harmonics = wavetable_read(harmonic_table(amps, rng), cycles)
    harmonics *= 1.0 + slow_walk(n, sr, rng, 0.05, 0.7)

    # Broadband noise through the structure, its level pulsing at the blade/vane pass rate.
    broadband = shaped_noise(n, sr, rng, _broadband_shape(profile, v, n, sr))
    if profile.broadband_modulation > 0:
        broadband *= 1.0 + profile.broadband_modulation * np.cos(profile.emphasis_order * phase)

    wave = db(profile.harmonic_db) * harmonics
    wave += db(profile.broadband_db + 4.0 * load + v.broadband_db_delta) * unit_rms(broadband)
    if profile.impact_db > -60:
        hits = np.zeros(n)
        where = crossings(cycles * profile.impact_order + rng.random())
        hits[where] = rng.uniform(0.8, 1.2, where.size)
        impacts = ring(hits, sr, profile.impact_hz * v.resonance_scale, profile.impact_decay_s)
        impacts += 0.5 * ring(hits, sr, profile.resonances[0].freq_hz * v.resonance_scale, profile.impact_decay_s)
        if where.size:
            wave += db(profile.impact_db) * unit_rms(impacts)
    return MachineSignal(wave=unit_rms(wave), phase=phase, rotation_hz=f_rot)


# --- backgrounds -----------------------------------------------------------------------------


def _transients(n: int, sr: int, rng: np.random.Generator, rate_hz: float, decay: tuple[float, float]) -> np.ndarray:
    """Occasional events (clanks, footsteps, doors): noise bursts ringing random resonances."""
    out = np.zeros(n)
    count = rng.poisson(rate_hz * n / sr)
    for _ in range(count):
        start = int(rng.integers(0, n))
        tau = _r(*decay, rng)
        length = min(n - start, int(5 * tau * sr) + 1)
        t = np.arange(length) / sr
        burst = rng.standard_normal(length) * np.exp(-t / tau)
        event = ring(burst, sr, _r(300, 4000, rng), 0.004)
        head = event[: int(tau * sr) + 1]
        # Level set over the event's own first decay time, so one event is as loud as one of many.
        out[start : start + length] += _r(0.5, 2.0, rng) * event / max(rms(head), 1e-12)
    return out


def _hum(n: int, sr: int, rng: np.random.Generator, f0: float, n_harm: int) -> np.ndarray:
    t = np.arange(n) / sr
    cycles = f0 * t + rng.random()
    amps = 1.0 / np.arange(1, n_harm + 1) ** 1.5
    return wavetable_read(harmonic_table(amps, rng), cycles)


def render_background(kind: str, n: int, sr: int, seed: int) -> np.ndarray:
    """Background noise of one kind, unit RMS. Kinds: factory, hvac, street, workshop."""
    rng = np.random.default_rng(seed)
    if kind not in BACKGROUNDS:
        raise ValueError(f"unknown background kind {kind!r}: known are {BACKGROUNDS}")
    shape = _background_shape(kind, n, sr)
    if kind == "factory":  # pink floor, mains hum, distant machinery clanks
        wave = shaped_noise(n, sr, rng, shape)
        wave += 0.3 * _hum(n, sr, rng, 50.0, 8)
        wave += 0.8 * _transients(n, sr, rng, 0.6, (0.01, 0.08))
    elif kind == "hvac":  # dark rumble, a blower tone, slow level drift
        wave = shaped_noise(n, sr, rng, shape)
        wave += 0.4 * _hum(n, sr, rng, _r(110, 130, rng), 5)
        wave *= 1.0 + slow_walk(n, sr, rng, 0.15, 2.0)
    elif kind == "street":  # brown-ish traffic with passing swells and horn-like tones
        wave = shaped_noise(n, sr, rng, shape)
        wave *= np.exp(slow_walk(n, sr, rng, 0.4, 1.5))
        wave += 0.5 * _transients(n, sr, rng, 0.3, (0.1, 0.4))
    elif kind == "workshop":  # brighter floor, tool whine, frequent knocks
        wave = shaped_noise(n, sr, rng, shape)
        tool = _hum(n, sr, rng, _r(300, 500, rng), 6) * (rng.random() < 0.7)
        wave += 0.3 * tool
        wave += 1.0 * _transients(n, sr, rng, 1.5, (0.005, 0.03))
    return unit_rms(wave)


@lru_cache(maxsize=16)
def _background_shape(kind: str, n: int, sr: int) -> np.ndarray:
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    shapes = {
        "factory": lambda: power_law(freqs, 0.5),
        "hvac": lambda: power_law(freqs, 1.0, 60.0) * resonance_gain(freqs, _res((180, 2, 8))),
        "street": lambda: power_law(freqs, 0.8, 40.0),
        "workshop": lambda: power_law(freqs, 0.3, 200.0),
    }
    shape = shapes[kind]()
    shape.flags.writeable = False
    return shape
