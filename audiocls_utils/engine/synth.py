"""Synthesize a GTZAN-shaped music-genre dataset offline, deterministically, with numpy only.

Each clip is procedural music (drums, bass, chords, melody) in a genre-typical style, recorded
through a simulated chain (room, saturation, noise, EQ, bandwidth). Every "artist" has a persistent
style (key, tempo, timbre, room and microphone) shared by all of its clips, so a random train/test
split leaks artists exactly like it does on GTZAN. The data is synthetic: results on it say nothing
about GTZAN.

    root = generate_dataset("data/synth")  # data/synth/genres/<genre>/<genre>.00000.wav ...
    audio = synthesize_clip("jazz", seconds=3.0, seed=1)  # float32 samples at 22,050 Hz
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from ..files import write_bytes
from ..gtzan import GENRES  # GTZAN's ten genres, which this dataset copies

SAMPLE_RATE = 22050
MAX_SECONDS = 600.0  # longest clip `synth` makes: 10 min takes about 0.5 GB while it is made

_VERSION = 1  # bump whenever the audio changes, so cached datasets regenerate
_PERSONA_TAG = 7_919  # keeps artist seeds apart from clip seeds
_MARKER = ".synth.json"  # the parameters a dataset folder was made with
_STEPS_PER_BAR = 16  # 16th notes in 4/4
_BORROW = 0.3  # at difficulty 1, the chance that a part (drums, bass, chords, lead) is foreign

_Note = tuple[int, int, tuple[int, ...], float]  # (step, length in steps, MIDI pitches, velocity)
_Instrument = Callable[[float, int, int, float, np.random.Generator], np.ndarray]


# ----------------------------------------------------------------------------- music theory

def _maj(r: int) -> tuple[int, ...]:
    """Return a major triad on semitone r."""
    return (r, r + 4, r + 7)


def _min(r: int) -> tuple[int, ...]:
    """Return a minor triad on semitone r."""
    return (r, r + 3, r + 7)


def _dom7(r: int) -> tuple[int, ...]:
    """Return a dominant seventh chord on semitone r."""
    return (r, r + 4, r + 7, r + 10)


def _min7(r: int) -> tuple[int, ...]:
    """Return a minor seventh chord on semitone r."""
    return (r, r + 3, r + 7, r + 10)


def _maj7(r: int) -> tuple[int, ...]:
    """Return a major seventh chord on semitone r."""
    return (r, r + 4, r + 7, r + 11)


def _power(r: int) -> tuple[int, ...]:
    """Return a power chord (root, fifth, octave) on semitone r."""
    return (r, r + 7, r + 12)


_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_DORIAN = (0, 2, 3, 5, 7, 9, 10)
_PHRYGIAN = (0, 1, 3, 5, 7, 8, 10)
_BLUES = (0, 3, 5, 6, 7, 10)
_MAJOR_PENTA = (0, 2, 4, 7, 9)
_MINOR_PENTA = (0, 3, 5, 7, 10)
_BEBOP = (0, 2, 4, 5, 7, 9, 10, 11)


# ----------------------------------------------------------------------------- genre recipes

@dataclass(frozen=True)
class _Groove:
    """One bar of drums on a 16-step grid ('X' accent, 'x' normal, 'o' ghost) with its kit."""

    kick: str = ""
    snare: str = ""
    hat: str = ""
    open_hat: str = ""
    ride: str = ""
    swing: float = 0.0  # 0 straight, 1 triplet feel
    rubato: bool = False
    kick_hz: float = 55.0
    kick_decay: float = 0.25
    snare_decay: float = 0.1


_GROOVES = {
    "none": _Groove(rubato=True),
    "shuffle": _Groove(kick="X.......X.......", snare="....X.......X...",
                       hat="x.x.x.x.x.x.x.x.", swing=0.9),
    "two_step": _Groove(kick="X.......X.......", snare="....x.......x...",
                        hat="x.o.x.o.x.o.x.o.", swing=0.15, kick_decay=0.18, snare_decay=0.07),
    "disco": _Groove(kick="X...X...X...X...", snare="....X.......X...",
                     hat="x.x.x.x.x.x.x.x.", open_hat="..x...x...x...x.", kick_decay=0.2),
    "boom_bap": _Groove(kick="X......x..X.....", snare="....X.......X...",
                        hat="x.o.x.o.x.o.x.oo", swing=0.4, kick_hz=45.0, kick_decay=0.45,
                        snare_decay=0.13),
    "swing_ride": _Groove(kick="o.......o.......", snare="......o.......o.",
                          hat="....x.......x...", ride="X...x.x.X...x.x.", swing=0.9,
                          kick_decay=0.2, snare_decay=0.08),
    "blast": _Groove(kick="XxXxXxXxXxXxXxXx", snare="..X...X...X...X.",
                     ride="X.x.X.x.X.x.X.x.", kick_hz=65.0, kick_decay=0.08, snare_decay=0.07),
    "pop": _Groove(kick="X...X...X...X...", snare="....X.......X...",
                   hat="xoxoxoxoxoxoxoxo", kick_decay=0.3),
    "one_drop": _Groove(kick="........X.......", snare="........X.......",
                        hat="x.x.x.x.x.x.x.x.", open_hat="..............x.", swing=0.5,
                        kick_decay=0.3, snare_decay=0.06),
    "backbeat": _Groove(kick="X.....x.X.......", snare="....X.......X...",
                        hat="x.x.x.x.x.x.x.x.", kick_decay=0.22),
}

# (step, length in steps, interval from the chord root); "walking" is generated per bar.
_BASS_LINES: dict[str, tuple[str, tuple[tuple[int, int, int], ...]]] = {
    "boogie": ("finger", tuple((s, 2, i) for s, i in zip(range(0, 16, 2),
                                                         (0, 4, 7, 9, 10, 9, 7, 4), strict=True))),
    "pedal": ("cello", ((0, 8, 12), (8, 8, 7))),
    "root_fifth": ("finger", ((0, 3, 0), (8, 3, -5), (14, 2, -3))),
    "octave": ("synth_bass", tuple((s, 2, 12 * (s % 4 == 2)) for s in range(0, 16, 2))),
    "sub": ("sub", ((0, 6, 0), (7, 3, 0), (10, 6, 0))),
    "walking": ("upright", ()),
    "roots16": ("finger", tuple((s, 1, 0) for s in range(16))),
    "pulse": ("synth_bass", tuple((s, 2, 0) for s in range(0, 16, 2))),
    "dub": ("sub", ((2, 2, 0), (4, 3, 0), (8, 2, 7), (11, 2, 3), (14, 2, 5))),
    "roots8": ("finger", tuple((s, 2, 0) for s in range(0, 16, 2))),
}

# Chord rhythms: (step, length in steps, velocity) and strum spread in seconds.
_COMPS: dict[str, tuple[tuple[tuple[int, int, float], ...], float]] = {
    "stabs": (((0, 3, 1.0), (6, 2, 0.7), (8, 3, 0.9), (14, 2, 0.7)), 0.0),
    "sustain": (((0, 16, 1.0),), 0.0),
    "strum": (tuple((s, 2, 1.0 if s % 4 == 0 else 0.6) for s in (0, 4, 6, 8, 12, 14)), 0.012),
    "sparse": (((0, 6, 1.0), (10, 6, 0.8)), 0.0),
    "charleston": (((0, 3, 0.9), (6, 4, 0.7)), 0.0),
    "chug": (tuple((s, 1, 1.0 if s in (0, 3, 6, 8, 11, 14) else 0.5) for s in range(16)), 0.0),
    "skank": (((4, 1, 1.0), (12, 1, 1.0)), 0.004),
    "eighths": (tuple((s, 2, 1.0 if s % 8 == 0 else 0.75) for s in range(0, 16, 2)), 0.0),
}


@dataclass(frozen=True)
class _Genre:
    """Recipe of a genre: tempo range (BPM), parts, harmony and mix."""

    tempo: tuple[float, float]
    groove: str
    bass: str
    comp: str
    chords: str  # chord instrument
    lead: str  # lead instrument, "" for none
    progression: tuple[tuple[int, ...], ...]  # one chord per bar, semitones from the key
    scale: tuple[int, ...]
    lead_steps: tuple[int, ...]  # melody note lengths to pick from, in 16th steps
    levels: tuple[float, float, float, float]  # drums, bass, chords, lead
    drive: float  # master-bus saturation
    room: float  # reverb time in seconds


_SPECS: dict[str, _Genre] = {
    "blues": _Genre(
        tempo=(70, 110), groove="shuffle", bass="boogie", comp="stabs", chords="piano",
        lead="pluck", scale=_BLUES, lead_steps=(2, 2, 4, 6),
        progression=(_dom7(0),) * 4 + (_dom7(5),) * 2 + (_dom7(0),) * 2
        + (_dom7(7), _dom7(5), _dom7(0), _dom7(7)),  # 12-bar blues
        levels=(0.8, 0.8, 0.8, 1.0), drive=1.2, room=0.5),
    "classical": _Genre(
        tempo=(60, 100), groove="none", bass="pedal", comp="sustain", chords="bowed",
        lead="bowed", scale=_MAJOR, lead_steps=(4, 4, 8, 2),
        progression=(_maj(0), _maj(5), _maj(7), _maj(0), _min(9), _min(2), _dom7(7), _maj(0)),
        levels=(0.0, 0.6, 1.0, 0.9), drive=0.3, room=1.6),
    "country": _Genre(
        tempo=(90, 130), groove="two_step", bass="root_fifth", comp="strum", chords="pluck",
        lead="bowed", scale=_MAJOR_PENTA, lead_steps=(2, 2, 4),
        progression=(_maj(0), _maj(0), _maj(5), _maj(7)),
        levels=(0.7, 0.8, 1.0, 0.8), drive=1.0, room=0.4),
    "disco": _Genre(
        tempo=(110, 130), groove="disco", bass="octave", comp="sustain", chords="pad",
        lead="bowed", scale=_DORIAN, lead_steps=(4, 8, 2),
        progression=(_min7(0), _min7(5)),
        levels=(1.0, 0.9, 0.7, 0.7), drive=1.5, room=0.6),
    "hiphop": _Genre(
        tempo=(80, 100), groove="boom_bap", bass="sub", comp="sparse", chords="piano",
        lead="", scale=_MINOR_PENTA, lead_steps=(2,),
        progression=(_min7(0), _maj7(8)),
        levels=(1.0, 1.0, 0.6, 0.0), drive=1.8, room=0.3),
    "jazz": _Genre(
        tempo=(100, 180), groove="swing_ride", bass="walking", comp="charleston", chords="piano",
        lead="reed", scale=_BEBOP, lead_steps=(2, 2, 1, 3),
        progression=(_min7(2) + (16,), _dom7(7) + (21,), _maj7(0) + (14,), _dom7(9) + (22,)),
        levels=(0.6, 0.8, 0.7, 1.0), drive=0.4, room=0.7),  # ii9 V9 Imaj9 VI7b9
    "metal": _Genre(
        tempo=(140, 200), groove="blast", bass="roots16", comp="chug", chords="metal",
        lead="metal", scale=_PHRYGIAN, lead_steps=(1, 1, 2),
        progression=(_power(0), _power(0), _power(1), _power(-4)),
        levels=(1.0, 0.6, 1.1, 0.6), drive=3.0, room=0.3),
    "pop": _Genre(
        tempo=(95, 125), groove="pop", bass="pulse", comp="sustain", chords="pad",
        lead="reed", scale=_MAJOR_PENTA, lead_steps=(2, 4, 2, 6),
        progression=(_maj(0), _maj(7), _min(9), _maj(5)),  # I-V-vi-IV
        levels=(0.9, 0.8, 0.7, 1.0), drive=1.6, room=0.5),
    "reggae": _Genre(
        tempo=(70, 90), groove="one_drop", bass="dub", comp="skank", chords="organ",
        lead="organ", scale=_MINOR, lead_steps=(4, 2, 6),
        progression=(_min(0), _min(5)),
        levels=(0.8, 1.1, 0.8, 0.6), drive=1.0, room=0.5),
    "rock": _Genre(
        tempo=(100, 150), groove="backbeat", bass="roots8", comp="eighths", chords="crunch",
        lead="crunch", scale=_MINOR_PENTA, lead_steps=(2, 4, 2, 1),
        progression=(_power(0), _power(-2), _power(-7), _power(0)),  # I-bVII-IV-I
        levels=(1.0, 0.8, 1.0, 0.7), drive=2.0, room=0.4),
}

_REGISTER = {  # lowest MIDI note of a chord root, per chord instrument
    "piano": 48, "bowed": 53, "pluck": 52, "pad": 53, "organ": 55, "reed": 55,
    "crunch": 40, "metal": 40,
}
_DRIVE = {"crunch": 4.0, "metal": 12.0}  # distorted-guitar instruments and their gain


# ----------------------------------------------------------------------------- instruments

def _hz(midi: float) -> float:
    """Convert a MIDI note number to Hz."""
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _time(n: int, sr: int) -> np.ndarray:
    """Return the times in seconds of n samples, as float32."""
    return np.arange(n, dtype=np.float32) / np.float32(sr)


def _envelope(n: int, sr: int, attack: float, release: float) -> np.ndarray:
    """Return a gain envelope of length n with linear attack and release ramps."""
    env = np.ones(n, np.float32)
    a, r = min(n, max(1, int(attack * sr))), min(n, max(1, int(release * sr)))
    env[:a] = np.linspace(0.0, 1.0, a, endpoint=False, dtype=np.float32)
    env[n - r:] *= np.linspace(1.0, 0.0, r, dtype=np.float32)
    return env


_TABLE_SIZE = 2048  # samples per period of a wavetable (a power of two)


def _harmonics(freq: float, sr: int, count: int, slope: float) -> tuple[np.ndarray, np.ndarray]:
    """Return harmonic numbers 1..count below 0.45 * sr and their amplitudes k^-slope."""
    k = np.arange(1, count + 1, dtype=np.float32)
    k = k[k * freq < 0.45 * sr]
    return k, k ** np.float32(-slope)


def _cycles(freq: float, n: int, sr: int, vibrato: float = 0.0, rate: float = 5.5) -> np.ndarray:
    """Return the running phase of a tone in cycles, with delayed vibrato of relative depth."""
    t = np.arange(n) / sr
    if not vibrato:
        return freq * t
    depth = vibrato * np.sin(2 * np.pi * rate * t) * np.minimum(t / 0.3, 1.0)
    return np.cumsum(freq / sr * (1.0 + depth))


def _wave(cycles: np.ndarray, harmonics: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """Look up (interpolating linearly) a wave of integer `harmonics` at each phase in cycles."""
    grid = np.arange(_TABLE_SIZE + 1, dtype=np.float32) * np.float32(2 * np.pi / _TABLE_SIZE)
    table = (amps[:, None] * np.sin(harmonics[:, None] * grid[None, :])).sum(axis=0)
    position = cycles * _TABLE_SIZE
    index = position.astype(np.int64)
    frac = (position - index).astype(np.float32)
    index &= _TABLE_SIZE - 1
    return table[index] + frac * (table[index + 1] - table[index])


def _saw(freq: float, t: np.ndarray, offset: float) -> np.ndarray:
    """Return a naive sawtooth in [-1, 1]."""
    cycles = freq * t + offset
    return 2.0 * (cycles - np.floor(cycles)) - 1.0


def _lowpass_fir(x: np.ndarray, width: int) -> np.ndarray:
    """Smooth x with a moving average of `width` samples (a gentle low-pass)."""
    if width <= 1:
        return x
    kernel = np.full(width, 1.0 / width, np.float32)
    return np.convolve(x, kernel, mode="same").astype(np.float32)


def _piano(freq: float, n: int, sr: int, bright: float, rng: np.random.Generator) -> np.ndarray:
    """Synthesize a piano-ish tone: a bright attack that fades into a darker, longer tone."""
    t = _time(n, sr)
    cycles = _cycles(freq, n, sr)
    decay = 1.5 * (220.0 / freq) ** 0.4
    k, amps = _harmonics(freq, sr, 12, 2.0 / bright)
    tone = _wave(cycles, k, amps) * np.exp(-t / np.float32(decay / 4))
    tone += _wave(cycles, k[:2], np.array([1.0, 0.2], np.float32)[:len(k)]) * np.exp(-t / decay)
    return tone * _envelope(n, sr, 0.003, 0.06)


def _bowed(freq: float, n: int, sr: int, bright: float, rng: np.random.Generator) -> np.ndarray:
    """Synthesize a bowed string: slow attack, vibrato, saw-like harmonics."""
    tone = _wave(_cycles(freq, n, sr, vibrato=0.006), *_harmonics(freq, sr, 16, 1.6 / bright))
    return tone * _envelope(n, sr, 0.12, 0.15)


def _cello(freq: float, n: int, sr: int, bright: float, rng: np.random.Generator) -> np.ndarray:
    """Synthesize a darker, lower bowed string for bass lines."""
    return _bowed(freq, n, sr, 0.7 * bright, rng)


def _pluck(freq: float, n: int, sr: int, bright: float, rng: np.random.Generator) -> np.ndarray:
    """Synthesize a plucked string with Karplus-Strong, one period per vectorised step."""
    p = max(2, round(sr / freq - 0.5))
    buf = np.zeros(n + 1, np.float32)
    burst = rng.uniform(-1.0, 1.0, p).astype(np.float32)
    smooth = np.convolve(burst, np.full(3, 1 / 3, np.float32), mode="same")
    rough = min(1.0, 0.6 * bright)
    buf[1:min(p, n) + 1] = (rough * burst + (1 - rough) * smooth)[:n]
    loss = np.float32(0.5 * (0.996 + 0.003 * min(1.0, bright / 2)))
    for s in range(p + 1, n + 1, p):
        e = min(s + p, n + 1)
        buf[s:e] = loss * (buf[s - p:e - p] + buf[s - p - 1:e - p - 1])
    return buf[1:] * _envelope(n, sr, 0.001, 0.05)


def _upright(freq: float, n: int, sr: int, bright: float, rng: np.random.Generator) -> np.ndarray:
    """Synthesize a dark plucked upright bass."""
    return _pluck(freq, n, sr, 0.35 * bright, rng)


def _finger(freq: float, n: int, sr: int, bright: float, rng: np.random.Generator) -> np.ndarray:
    """Synthesize a round electric bass tone."""
    return _piano(freq, n, sr, 0.6 * bright, rng)


def _pad(freq: float, n: int, sr: int, bright: float, rng: np.random.Generator) -> np.ndarray:
    """Synthesize a synth pad: three detuned saws, low-passed, slow attack."""
    t = _time(n, sr)
    offsets = rng.uniform(0.0, 1.0, 3)
    tone = sum(_saw(freq * d, t, o) for d, o in zip((0.993, 1.0, 1.007), offsets, strict=True))
    return _lowpass_fir(tone / 3, int(10 / bright)) * _envelope(n, sr, 0.08, 0.2)


def _synth_bass(freq: float, n: int, sr: int, bright: float,
                rng: np.random.Generator) -> np.ndarray:
    """Synthesize a punchy low-passed saw bass."""
    t = _time(n, sr)
    tone = _lowpass_fir(_saw(freq, t, 0.0), int(14 / bright)) * np.exp(-t / 0.4)
    return tone * _envelope(n, sr, 0.004, 0.03)


def _sub(freq: float, n: int, sr: int, bright: float, rng: np.random.Generator) -> np.ndarray:
    """Synthesize an 808-style sub bass: a sine that glides down onto its pitch."""
    t = np.arange(n) / sr
    inst = freq * (1.0 + 0.6 * np.exp(-t / 0.03))
    tone = np.tanh(1.5 * np.sin(2 * np.pi * np.cumsum(inst) / sr)) * np.exp(-t / 0.9)
    return tone.astype(np.float32) * _envelope(n, sr, 0.003, 0.05)


def _organ(freq: float, n: int, sr: int, bright: float, rng: np.random.Generator) -> np.ndarray:
    """Synthesize a drawbar organ (sub-octave to 8th harmonic) with tremolo."""
    harmonics = np.array([1, 2, 4, 6, 8, 12, 16], np.float32)  # of the sub-octave
    amps = np.array([0.5, 1, 0.7, 0.4, 0.3 * bright, 0.2 * bright, 0.1 * bright], np.float32)
    keep = harmonics * freq / 2 < 0.45 * sr
    tone = _wave(_cycles(freq / 2, n, sr), harmonics[keep], amps[keep])
    tremolo = 1.0 + 0.15 * np.sin(np.float32(2 * np.pi * 6.5) * _time(n, sr))
    return tone * tremolo * _envelope(n, sr, 0.01, 0.03)


def _reed(freq: float, n: int, sr: int, bright: float, rng: np.random.Generator) -> np.ndarray:
    """Synthesize a reed/square lead: odd-heavy harmonics, vibrato and breath."""
    k, amps = _harmonics(freq, sr, 12, 1.3 / bright)
    amps *= np.where(k % 2 == 1, 1.0, 0.3).astype(np.float32)
    tone = _wave(_cycles(freq, n, sr, vibrato=0.004, rate=5.0), k, amps)
    breath = _lowpass_fir(rng.standard_normal(n, np.float32), 3) * np.float32(0.08)
    return (tone + breath) * _envelope(n, sr, 0.04, 0.08)


def _distorted(freqs: list[float], n: int, sr: int, bright: float, drive: float,
               rng: np.random.Generator) -> np.ndarray:
    """Synthesize a distorted guitar: summed saws through tanh, then a cabinet low-pass."""
    t = _time(n, sr)
    offsets = rng.uniform(0.0, 1.0, len(freqs))
    tone = sum(_saw(f, t, o) for f, o in zip(freqs, offsets, strict=True)) / len(freqs)
    tone = np.tanh(drive * tone) * np.exp(-t / 0.8)
    return _lowpass_fir(tone, int(5 / bright)) * _envelope(n, sr, 0.002, 0.02)


_INSTRUMENTS: dict[str, _Instrument] = {
    "piano": _piano, "bowed": _bowed, "cello": _cello, "pluck": _pluck, "upright": _upright,
    "finger": _finger, "pad": _pad, "synth_bass": _synth_bass, "sub": _sub, "organ": _organ,
    "reed": _reed,
}
_RELEASE = 0.15  # seconds a note rings on past its written length


# ----------------------------------------------------------------------------- drums

def _kick(sr: int, hz: float, decay: float) -> np.ndarray:
    """Synthesize a kick drum: a sine sweeping down onto `hz`, with a click."""
    n = int((decay * 4 + 0.02) * sr)
    t = np.arange(n) / sr
    inst = hz + 4.0 * hz * np.exp(-t / 0.025)
    body = np.sin(2 * np.pi * np.cumsum(inst) / sr) * np.exp(-t / decay)
    click = np.exp(-t / 0.002)
    return (body + 0.3 * click).astype(np.float32)


def _snare(sr: int, decay: float, tone_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Synthesize a snare: a bright noise burst plus a short tone."""
    n = int(decay * 4 * sr)
    t = np.arange(n) / sr
    noise = np.diff(rng.standard_normal(n + 1)) * 0.5 * np.exp(-t / decay)
    body = np.sin(2 * np.pi * tone_hz * t) * np.exp(-t / 0.04)
    return (noise + 0.7 * body).astype(np.float32)


def _cymbal(sr: int, decay: float, rng: np.random.Generator, metallic: float) -> np.ndarray:
    """Synthesize a hat or ride: high-passed noise plus inharmonic partials."""
    n = int(decay * 4 * sr)
    t = _time(n, sr)
    noise = np.diff(rng.standard_normal(n + 2, np.float32), 2) * np.float32(0.3)
    bell = sum(np.sin(np.float32(2 * np.pi * f) * t) for f in (3120, 4690, 5830)) * metallic
    return ((noise + 0.2 * bell) * np.exp(-t / decay)).astype(np.float32)


def _drum_kit(groove: _Groove, sr: int, tune: float,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Return one sample per drum voice, tuned by the artist."""
    return {
        "kick": _kick(sr, groove.kick_hz * tune, groove.kick_decay),
        "snare": _snare(sr, groove.snare_decay, 190.0 * tune, rng),
        "hat": _cymbal(sr, 0.03, rng, 0.2),
        "open_hat": _cymbal(sr, 0.15, rng, 0.3),
        "ride": _cymbal(sr, 0.35, rng, 1.0),
    }


_HIT = {"X": 1.0, "x": 0.7, "o": 0.35}
_DRUM_GAIN = {"kick": 1.0, "snare": 0.8, "hat": 0.35, "open_hat": 0.3, "ride": 0.3}


# ----------------------------------------------------------------------------- artists & songs

@dataclass(frozen=True)
class _Persona:
    """Persistent style of one artist; raw draws, scaled by difficulty where they are used."""

    key: int
    tempo: float  # position inside the genre's tempo range, 0..1
    bright: float  # standard normal
    mix: tuple[float, ...]  # standard normals, one per stem
    room: float  # reverb-time multiplier
    wet: float
    tilt: tuple[float, float]  # standard normals: low and high shelf
    bandwidth: float  # 0..1, how band-limited the microphone is
    noise_colour: float  # spectral slope of the hiss: 0 white, 1 pink, 2 brown
    snr: float  # 0..1, position inside the SNR range
    hum_hz: float  # 0 (none), 50 or 60
    looseness: float  # timing jitter in seconds
    tune: float  # drum tuning multiplier


def _persona(genre_index: int, artist: int) -> _Persona:
    """Draw the persistent style of `artist` within a genre."""
    rng = np.random.default_rng([_PERSONA_TAG, genre_index, artist])
    return _Persona(
        key=int(rng.integers(12)), tempo=float(rng.random()), bright=float(rng.standard_normal()),
        mix=tuple(float(v) for v in rng.standard_normal(4)), room=float(rng.uniform(0.5, 1.5)),
        wet=float(rng.uniform(0.1, 0.4)),
        tilt=(float(rng.standard_normal()), float(rng.standard_normal())),
        bandwidth=float(rng.random()), noise_colour=float(rng.uniform(0.0, 2.0)),
        snr=float(rng.random()), hum_hz=float(rng.choice([0.0, 0.0, 50.0, 60.0])),
        looseness=float(rng.uniform(0.002, 0.012)), tune=float(rng.uniform(0.85, 1.15)),
    )


@dataclass(frozen=True)
class _Song:
    """Everything needed to render one clip's music."""

    bpm: float
    groove: _Groove
    bass: str
    comp: str
    chords: str
    lead: str
    progression: tuple[tuple[int, ...], ...]
    scale: tuple[int, ...]
    lead_steps: tuple[int, ...]
    levels: tuple[float, float, float, float]
    drive: float
    room: float


def _arrange(genre: str, persona: _Persona, difficulty: float, rng: np.random.Generator) -> _Song:
    """Pick tempo and parts; each part comes from another genre with prob. _BORROW * difficulty."""
    spec = _SPECS[genre]
    borrow = rng.random(4) < _BORROW * difficulty
    donor_indices = rng.integers(0, len(GENRES) - 1, 4)
    others = [g for g in GENRES if g != genre]
    donors = [_SPECS[others[i]] if b else spec for b, i in zip(borrow, donor_indices, strict=True)]
    drums, bass, chords, lead = donors
    lo, hi = spec.tempo[0] - 25 * difficulty, spec.tempo[1] + 25 * difficulty
    bpm = (lo + persona.tempo * (hi - lo)) * (1 + 0.03 * rng.standard_normal())
    return _Song(
        bpm=bpm, groove=_GROOVES[drums.groove], bass=bass.bass, comp=chords.comp,
        chords=chords.chords, lead=lead.lead, progression=chords.progression,
        scale=lead.scale, lead_steps=lead.lead_steps,
        levels=(drums.levels[0], bass.levels[1], chords.levels[2], lead.levels[3]),
        drive=spec.drive, room=spec.room,
    )


def _step_times(song: _Song, n_steps: int, rng: np.random.Generator) -> np.ndarray:
    """Return the onset of every 16th step in seconds (swing, rubato, random song position)."""
    step = 15.0 / song.bpm
    lengths = np.full(n_steps, step)
    if song.groove.rubato:
        period, phase = rng.uniform(24, 48), rng.uniform(0, 2 * np.pi)  # rubato, in steps
        lengths *= 1 + 0.15 * np.sin(2 * np.pi * np.arange(n_steps) / period + phase)
    times = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    times += song.groove.swing * step * 2 / 3 * (np.arange(n_steps) % 4 == 2)
    return times - rng.uniform(0, _STEPS_PER_BAR) * step


def _bass_notes(song: _Song, key: int, n_bars: int, start: int,
                rng: np.random.Generator) -> list[_Note]:
    """Return the bass line, following the chord progression."""
    prog = song.progression
    notes: list[_Note] = []
    for bar in range(n_bars):
        chord = prog[(start + bar) % len(prog)]
        root = 28 + (key + chord[0]) % 12
        if song.bass == "walking":
            next_root = 28 + (key + prog[(start + bar + 1) % len(prog)][0]) % 12
            tones = [c - chord[0] for c in chord[1:3]]
            line = (0, int(rng.choice(tones)), 7, next_root - root + int(rng.choice([-1, 1])))
            pattern = tuple((4 * i, 4, iv) for i, iv in enumerate(line))
        else:
            pattern = _BASS_LINES[song.bass][1]
        base = bar * _STEPS_PER_BAR
        notes += [(base + s, d, (root + iv,), 1.0) for s, d, iv in pattern]
    return notes


def _chord_notes(song: _Song, key: int, n_bars: int, start: int) -> list[_Note]:
    """Return the chord hits of the comping pattern, voiced in the instrument's register."""
    hits, _ = _COMPS[song.comp]
    register = _REGISTER[song.chords]
    notes: list[_Note] = []
    for bar in range(n_bars):
        chord = song.progression[(start + bar) % len(song.progression)]
        root = register + (key + chord[0]) % 12
        pitches = tuple(root + c - chord[0] for c in chord)
        notes += [(bar * _STEPS_PER_BAR + s, d, pitches, v) for s, d, v in hits]
    return notes


def _lead_notes(song: _Song, key: int, n_bars: int, rng: np.random.Generator) -> list[_Note]:
    """Return a melody: a one-bar motif in the scale, repeated with small variations."""
    rhythm: list[tuple[int, int]] = []
    step = 0
    while step < _STEPS_PER_BAR:
        length = int(rng.choice(song.lead_steps))
        if rng.random() > 0.2:
            rhythm.append((step, length))
        step += length
    scale = song.scale
    degrees = np.cumsum(rng.integers(-2, 3, len(rhythm))) + int(rng.integers(len(scale)))
    notes: list[_Note] = []
    for bar in range(n_bars):
        varied = degrees + rng.choice([-1, 0, 0, 0, 1], len(degrees))
        varied = np.clip(varied, 0, 2 * len(scale) - 1)
        for (s, d), deg in zip(rhythm, varied, strict=True):
            midi = 60 + key + scale[deg % len(scale)] + 12 * (deg // len(scale))
            notes.append((bar * _STEPS_PER_BAR + s, d, (int(midi),), 0.8 + 0.2 * (s % 4 == 0)))
    return notes


# ----------------------------------------------------------------------------- rendering

def _place(buf: np.ndarray, sound: np.ndarray, start: int, gain: float) -> None:
    """Add `gain * sound` into `buf` at sample `start`, clipped to the buffer."""
    a, b = max(start, 0), min(start + len(sound), len(buf))
    if a < b:
        buf[a:b] += np.float32(gain) * sound[a - start:b - start]


@dataclass(frozen=True)
class _Stage:
    """Shared rendering context of one clip: step onsets, buffer size and feel."""

    times: np.ndarray  # onset of every 16th step, in seconds
    step: float  # nominal seconds per 16th step
    n: int
    sr: int
    bright: float
    jitter: float  # timing jitter in seconds
    rng: np.random.Generator


def _render_pitches(name: str, pitches: tuple[int, ...], n: int, strum: float,
                    stage: _Stage) -> np.ndarray:
    """Render one note or chord on instrument `name`, strummed `strum` seconds per string."""
    freqs = [_hz(p) for p in pitches]
    if name in _DRIVE:
        return _distorted(freqs, n, stage.sr, stage.bright, _DRIVE[name], stage.rng)
    offset = int(strum * stage.sr)
    out = np.zeros(n + offset * (len(freqs) - 1), np.float32)
    for i, f in enumerate(freqs):
        out[i * offset:i * offset + n] += _INSTRUMENTS[name](f, n, stage.sr, stage.bright,
                                                            stage.rng)
    return out / math.sqrt(len(freqs))


def _render_part(notes: list[_Note], name: str, strum: float, stage: _Stage) -> np.ndarray:
    """Render notes on one instrument, reusing the samples of repeated notes."""
    buf = np.zeros(stage.n, np.float32)
    cache: dict[tuple[tuple[int, ...], int], np.ndarray] = {}
    for s, d, pitches, vel in notes:
        if s >= len(stage.times) or stage.times[s] > stage.n / stage.sr:
            continue
        length = int((d * stage.step + _RELEASE) * stage.sr)
        if (pitches, length) not in cache:
            cache[pitches, length] = _render_pitches(name, pitches, length, strum, stage)
        onset = stage.times[s] + stage.jitter * stage.rng.standard_normal()
        _place(buf, cache[pitches, length], round(onset * stage.sr), vel)
    return buf


def _render_drums(groove: _Groove, tune: float, stage: _Stage) -> np.ndarray:
    """Render the groove's drum pattern, bar after bar."""
    buf = np.zeros(stage.n, np.float32)
    n_bars = len(stage.times) // _STEPS_PER_BAR
    for voice, sample in _drum_kit(groove, stage.sr, tune, stage.rng).items():
        hits = [(s, _HIT[c]) for s, c in enumerate(getattr(groove, voice)) if c in _HIT]
        for bar, (s, velocity) in itertools.product(range(n_bars), hits):
            onset = stage.times[bar * _STEPS_PER_BAR + s]
            onset += stage.jitter * stage.rng.standard_normal()
            gain = velocity * _DRUM_GAIN[voice] * (1 + 0.1 * stage.rng.standard_normal())
            _place(buf, sample, round(onset * stage.sr), gain)
    return buf


def _mix(stems: list[np.ndarray], song: _Song, persona: _Persona, difficulty: float) -> np.ndarray:
    """Sum the stems at the genre's levels, varied per artist; each stem is RMS-normalized."""
    mix = np.zeros_like(stems[0])
    for stem, level, spread in zip(stems, song.levels, persona.mix, strict=False):
        rms = float(np.sqrt(np.mean(stem * stem)))
        if rms > 1e-6 and level > 0:
            mix += np.float32(level * 10 ** (spread * (1.5 + 3 * difficulty) / 20) / rms) * stem
    return mix


def _render_music(song: _Song, persona: _Persona, difficulty: float, n: int, sr: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Render drums, bass, chords and lead of `song` and mix them into one dry track."""
    step = 15.0 / song.bpm
    n_bars = math.ceil(n / sr / (_STEPS_PER_BAR * step * 0.85)) + 2
    stage = _Stage(times=_step_times(song, n_bars * _STEPS_PER_BAR, rng), step=step, n=n, sr=sr,
                   bright=math.exp(persona.bright * (0.15 + 0.25 * difficulty)),
                   jitter=persona.looseness, rng=rng)
    start = int(rng.integers(len(song.progression)))
    stems = [
        _render_drums(song.groove, persona.tune, stage),
        _render_part(_bass_notes(song, persona.key, n_bars, start, rng),
                     _BASS_LINES[song.bass][0], 0.0, stage),
        _render_part(_chord_notes(song, persona.key, n_bars, start), song.chords,
                     _COMPS[song.comp][1], stage),
    ]
    if song.lead:
        stems.append(_render_part(_lead_notes(song, persona.key, n_bars, rng), song.lead, 0.0,
                                  stage))
    return _mix(stems, song, persona, difficulty)


# ----------------------------------------------------------------------------- recording chain

def _fft_size(n: int) -> int:
    """Return the smallest size >= n of the form 2^a 3^b 5^c, which FFTs handle fast."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            best = min(best, p35 << (math.ceil(n / p35) - 1).bit_length())
            p35 *= 3
        p5 *= 5
    return best


def _room_response(persona: _Persona, room: float, sr: int, genre_index: int,
                   artist: int) -> np.ndarray:
    """Return the artist's room impulse response: direct sound plus a decaying noise tail."""
    rng = np.random.default_rng([_PERSONA_TAG, genre_index, artist, 1])
    rt60 = room * persona.room
    t = np.arange(int(0.5 * rt60 * sr), dtype=np.float32) / np.float32(sr)
    ir = rng.standard_normal(len(t), np.float32) * np.exp(-6.9 * t / rt60)
    ir *= persona.wet * 0.05
    ir[0] = 1.0
    return ir


def _eq_gain(freqs: np.ndarray, persona: _Persona, difficulty: float) -> np.ndarray:
    """Return the microphone/EQ magnitude response: low and high shelves plus a band limit."""
    low_db, high_db = (v * (2 + 8 * difficulty) for v in persona.tilt)
    f2 = freqs * freqs
    tilt_db = low_db / (1 + f2 / 250.0**2) + high_db * f2 / (f2 + 3000.0**2)
    cutoff = 10500.0 - persona.bandwidth * (1500.0 + 6000.0 * difficulty)
    lowpass = 1.0 / np.sqrt(1.0 + (f2 / cutoff**2) ** 4)
    highpass = f2 / (f2 + 40.0**2)
    return 10 ** (tilt_db / 20) * lowpass * highpass


def _hiss(freqs: np.ndarray, colour: float, rng: np.random.Generator) -> np.ndarray:
    """Return the spectrum of random noise whose power falls as 1/f^colour."""
    white = rng.standard_normal(2 * len(freqs), np.float32).view(np.complex64)
    return white * np.maximum(freqs, 20.0) ** (-colour / 2)


def _hum(n: int, sr: int, hz: float) -> np.ndarray:
    """Return mains hum at `hz` with two overtones."""
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    return sum(np.sin(np.float32(2 * np.pi * h * hz) * t) / h for h in (1, 2, 3))


def _energy(spectrum: np.ndarray) -> float:
    """Return the summed squared magnitude of a spectrum (numpy's own sum, not BLAS)."""
    return float(np.sum(spectrum.real**2 + spectrum.imag**2))


def _record(mix: np.ndarray, persona: _Persona, song: _Song, difficulty: float, sr: int,
            genre_index: int, artist: int, rng: np.random.Generator) -> np.ndarray:
    """Play `mix` through saturation, the room, hiss and hum, and the EQ; peak-normalize."""
    n = len(mix)
    mix = np.tanh(song.drive * mix / max(float(np.abs(mix).max()), 1e-6)) / math.tanh(song.drive)
    ir = _room_response(persona, song.room, sr, genre_index, artist)
    nfft = _fft_size(n + len(ir) - 1)
    spectrum = np.fft.rfft(mix, nfft) * np.fft.rfft(ir, nfft)
    freqs = np.fft.rfftfreq(nfft, 1 / sr).astype(np.float32)
    noise = _hiss(freqs, persona.noise_colour, rng)
    snr_db = 40 - 28 * difficulty + 10 * (persona.snr - 0.5) + 2 * rng.standard_normal()
    noise *= np.float32(math.sqrt(_energy(spectrum) / _energy(noise) / 10 ** (snr_db / 10)))
    out = np.fft.irfft((spectrum + noise) * _eq_gain(freqs, persona, difficulty), nfft)[:n]
    if persona.hum_hz:
        out += np.float32(0.5 * float(np.std(out)) * 10 ** (-snr_db / 20)) * _hum(n, sr,
                                                                                   persona.hum_hz)
    level = rng.uniform(0.3, 0.95)
    return (out * np.float32(level / max(float(np.abs(out).max()), 1e-6))).astype(np.float32)


# ----------------------------------------------------------------------------- public API

def _check_audio_args(seconds: float, seed: int, difficulty: float, sample_rate: int) -> None:
    """Raise ValueError for a duration, seed, difficulty or sample rate that cannot be used."""
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be at least 8000 Hz, got {sample_rate!r}")
    if not (math.isfinite(seconds) and round(seconds * sample_rate) >= 1):
        raise ValueError(f"seconds must be positive (at least one sample), got {seconds!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"seconds must be at most {MAX_SECONDS:g} (10 min per clip; a clip "
                         f"takes memory while it is made), got {seconds!r}")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1] (0 easy, 1 hard), got {difficulty!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def synthesize_clip(genre: str, seconds: float = 5.0, seed: int = 0, difficulty: float = 0.5,
                    sample_rate: int = SAMPLE_RATE, artist: int = 0) -> np.ndarray:
    """Synthesize one music clip of `genre` as float32 mono audio in [-1, 1].

    Args:
        seed: picks the clip; the same arguments always give the same samples.
        difficulty: 0 keeps genres apart, 1 makes them borrow each other's parts, adds noise and
            stronger recording colouration.
        artist: id of a persistent artist style (key, tempo, timbre, room, microphone) shared
            by every clip made with that id in this genre, whatever the seed.
    """
    if genre not in GENRES:
        raise ValueError(f"unknown genre {genre!r}; use one of: {', '.join(GENRES)}")
    if artist < 0:
        raise ValueError(f"artist must be a non-negative integer, got {artist!r}")
    _check_audio_args(seconds, seed, difficulty, sample_rate)
    genre_index = GENRES.index(genre)
    persona = _persona(genre_index, artist)
    rng = np.random.default_rng([seed, genre_index, artist])
    song = _arrange(genre, persona, difficulty, rng)
    n = round(seconds * sample_rate)
    mix = _render_music(song, persona, difficulty, n, sample_rate, rng)
    return _record(mix, persona, song, difficulty, sample_rate, genre_index, artist, rng)


def _derive(*keys: int) -> int:
    """Derive a 32-bit seed from integer keys (stable across processes, unlike hash())."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def _wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """Encode float audio in [-1, 1] as a 16-bit PCM mono WAV file."""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def _read_marker(root: Path) -> dict | None:
    """Return the parameters recorded in `root/.synth.json`, or None if there are none."""
    try:
        return json.loads((root / _MARKER).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(root: Path, params: dict) -> bool:
    """Tell whether `root` already holds exactly the finished dataset described by `params`."""
    if _read_marker(root) != {**params, "complete": True}:
        return False
    present = {p.relative_to(root).as_posix() for p in root.glob("*/*.wav")}
    expected = {f"{g}/{g}.{i:05d}.wav" for g in GENRES for i in range(params["clips_per_class"])}
    return present == expected and all((root / n).is_file() for n in ("groups.csv", "README.txt"))


def _check_not_foreign(root: Path) -> None:
    """Refuse to write into a folder with files that this module did not make (real data?)."""
    if _read_marker(root) is None and root.is_dir() and any(
            not p.name.startswith(".") for p in root.rglob("*") if p.is_file()):
        raise FileExistsError(f"{root} holds files that audiocls_utils.engine.synth did not write "
                              "(real data?); pick another out_dir, or delete that folder first")


def _check_not_another_set(root: Path, params: dict) -> None:
    """Refuse to write over a finished dataset made with other settings (delete nothing)."""
    marker = _read_marker(root)
    if not (marker and marker.get("complete")):
        return  # nothing there, or an interrupted run of this module: made again
    changed = [f"{key} {marker.get(key)!r} -> {value!r}" for key, value in params.items()
               if marker.get(key) != value]
    if changed:
        raise FileExistsError(
            f"{root} already holds a synthetic set made with other settings ({', '.join(changed)});"
            " choose another folder, or replace it (`audiocls synth --replace`, replace=True)")


def _remove_stale(root: Path, keep: set[str]) -> None:
    """Delete wavs and temporary files of earlier runs that this dataset does not contain."""
    for genre in GENRES:
        for path in (root / genre).glob(f"{genre}.*.wav"):
            if path.relative_to(root).as_posix() not in keep:
                path.unlink()
    for path in [*root.glob(".*.tmp"), *root.glob("*/.*.wav.*.tmp")]:
        path.unlink()


def _readme(params: dict) -> str:
    """Return the README text that labels the folder as synthetic."""
    return (
        "SYNTHETIC DATA - not GTZAN.\n\n"
        "These clips were generated procedurally by audiocls_utils.engine.synth.generate_dataset\n"
        f"with seed={params['seed']}, difficulty={params['difficulty']}, "
        f"clips_per_class={params['clips_per_class']}, seconds={params['seconds']},\n"
        f"artists_per_class={params['artists_per_class']}, "
        f"sample_rate={params['sample_rate']} (generator version {params['version']}).\n\n"
        "Layout mirrors GTZAN: <genre>/<genre>.NNNNN.wav, mono 16-bit PCM. groups.csv maps each\n"
        "file to its synthetic 'artist'; split by group to avoid artist leakage.\n"
        "Results on this data say nothing about GTZAN or real music.\n"
    )


def _write_clips(root: Path, params: dict, progress: bool) -> dict[str, str]:
    """Synthesize and write every clip of the dataset; return each path's artist group."""
    clips, artists, seed = params["clips_per_class"], params["artists_per_class"], params["seed"]
    groups = {}
    with tqdm(total=len(GENRES) * clips, desc="synthesizing", unit="clip",
              disable=not progress) as bar:
        for genre_index, genre in enumerate(GENRES):
            (root / genre).mkdir(parents=True, exist_ok=True)
            for clip in range(clips):
                artist = clip * artists // clips
                audio = synthesize_clip(genre, params["seconds"], _derive(seed, genre_index, clip),
                                        params["difficulty"], params["sample_rate"],
                                        _derive(_PERSONA_TAG, seed, genre_index, artist))
                name = f"{genre}/{genre}.{clip:05d}.wav"
                # No fsync: clips are quick to make again, and a killed run never leaves half of one.
                write_bytes(root / name, _wav_bytes(audio, params["sample_rate"]), fsync=False)
                groups[name] = f"{genre}-artist{artist}"
                bar.update()
    return groups


def _groups_csv(groups: dict[str, str]) -> str:
    """Return the groups table as CSV text with columns path,group."""
    table = io.StringIO()
    csv.writer(table, lineterminator="\n").writerows([("path", "group"), *groups.items()])
    return table.getvalue()


def _write_marker(root: Path, params: dict, complete: bool) -> None:
    """Record the parameters of the dataset in `root` and whether it is finished."""
    write_bytes(root / _MARKER, json.dumps({**params, "complete": complete}, indent=2).encode())


def generate_dataset(out_dir: str | Path, clips_per_class: int = 20, seconds: float = 5.0,
                     seed: int = 0, difficulty: float = 0.5, artists_per_class: int = 4,
                     sample_rate: int = SAMPLE_RATE, progress: bool = True,
                     replace: bool = False) -> Path:
    """Write a GTZAN-shaped synthetic dataset under `out_dir/genres` and return that folder.

    Clips are assigned to artists in contiguous blocks (as in GTZAN; at most one artist per
    clip); `groups.csv` lists each file's artist. Each seed draws new artists too, so datasets
    made with different seeds share no artist. If the folder already holds this exact dataset,
    nothing is rewritten (missing files are made again). A finished dataset made with other
    settings is never deleted unless `replace`: FileExistsError says what differs.
    """
    if clips_per_class < 1:
        raise ValueError(f"clips_per_class must be at least 1, got {clips_per_class!r}")
    if artists_per_class < 1:
        raise ValueError(f"artists_per_class must be at least 1, got {artists_per_class!r}")
    _check_audio_args(seconds, seed, difficulty, sample_rate)
    root = Path(out_dir).expanduser() / "genres"
    params = {"generator": "audiocls_utils.synth", "version": _VERSION, "seed": int(seed),
              "difficulty": float(difficulty), "clips_per_class": int(clips_per_class),
              "seconds": float(seconds),
              "artists_per_class": int(min(artists_per_class, clips_per_class)),
              "sample_rate": int(sample_rate)}
    if _is_complete(root, params):
        return root
    _check_not_foreign(root)
    if not replace:
        _check_not_another_set(root, params)
    root.mkdir(parents=True, exist_ok=True)
    _write_marker(root, params, complete=False)  # an interrupted run must not look done
    groups = _write_clips(root, params, progress)
    _remove_stale(root, set(groups))
    write_bytes(root / "groups.csv", _groups_csv(groups).encode())
    write_bytes(root / "README.txt", _readme(params).encode())
    _write_marker(root, params, complete=True)
    return root
