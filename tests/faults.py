"""Write a data folder holding every kind of bad input users meet, beside good clips.

The robustness lesson and its tests use it: each bad file must get one clear line naming it and
the action taken, and training must go on with the rest.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

# name -> what it is; the key is also the file (or folder) name written below `root/<class>/`.
CASES = {
    "corrupt.wav": "a RIFF/WAVE signature followed by random bytes",
    "truncated.wav": "a wav cut inside its header",
    "cut.wav": "a wav whose audio data stops half-way (an interrupted download)",
    "empty.wav": "0 bytes",
    "silent.wav": "1 s of digital silence",
    "nan.wav": "float wav full of NaN",
    "stereo.wav": "2 channels",
    "short.wav": "0.05 s long",
    "long.wav": "11 minutes long (8 kHz, to keep the file small)",
    "flac_named.wav": "a FLAC file with a .wav extension",
    "notes.txt": "a text file among the clips",
    "fake.mp3": "text with an audio extension",
    "loop_a.wav": "a symbolic link loop (loop_a.wav -> loop_b.wav -> loop_a.wav)",
    "loop_dir": "a folder link back to its parent",
    "bad_name": "a file name that is not UTF-8",
    "single": "a class folder with a single clip",
    "voice.m4a": "an audio format the decoder cannot read",
    "copy.wav": "the bytes of low.00001.wav again, in the class high",
    "huge.wav": "float samples up to 8e36: finite, but no sound",
    "one_hertz.wav": "a header saying 1 Hz",
    "cancelling.wav": "stereo whose channels are each other inverted: silence in mono",
}


def _tone(seconds: float, sample_rate: int, frequency: float, seed: int) -> np.ndarray:
    """Return a noisy sine, float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = 0.4 * np.sin(2 * np.pi * frequency * t) + 0.02 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def write_fault_dataset(root: str | Path, clips_per_class: int = 6, sample_rate: int = 16000) -> Path:
    """Write good clips of classes `low` and `high` plus every case in CASES; return `root`."""
    root = Path(root)
    for label, frequency in (("low", 300.0), ("high", 2400.0)):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(clips_per_class):
            sf.write(folder / f"{label}.{index:05d}.wav",
                     _tone(1.0, sample_rate, frequency * (1 + 0.05 * index), index), sample_rate)
    low, high = root / "low", root / "high"
    good = (low / "low.00000.wav").read_bytes()
    (low / "corrupt.wav").write_bytes(b"RIFF\x00\x10\x00\x00WAVE" + np.random.default_rng(0).bytes(4096))
    (low / "cut.wav").write_bytes(good[: len(good) // 2])
    (low / "truncated.wav").write_bytes(good[:30])
    (low / "empty.wav").write_bytes(b"")
    sf.write(low / "silent.wav", np.zeros(sample_rate, np.float32), sample_rate)
    sf.write(low / "nan.wav", np.full(sample_rate, np.nan, np.float32), sample_rate,
             subtype="FLOAT")
    sf.write(high / "stereo.wav", np.stack([_tone(1.0, sample_rate, 2400, 1)] * 2, axis=1),
             sample_rate)
    sf.write(high / "short.wav", _tone(0.05, sample_rate, 2400, 2), sample_rate)
    sf.write(high / "long.wav", _tone(660.0, 8000, 2400, 3), 8000, subtype="PCM_16")
    sf.write(high / "flac_named.wav", _tone(1.0, sample_rate, 2500, 4), sample_rate,
             format="FLAC")
    (high / "notes.txt").write_text("recorded on a rainy day\n")
    (low / "fake.mp3").write_text("this is not an mp3\n" * 50)
    os.symlink("loop_b.wav", low / "loop_a.wav")
    os.symlink("loop_a.wav", low / "loop_b.wav")
    os.symlink("..", high / "loop_dir")
    sf.write(low / "cafe.wav", _tone(1.0, sample_rate, 310, 5), sample_rate)
    os.rename(low / "cafe.wav", os.path.join(os.fsencode(low), b"caf\xe9.wav"))  # Latin-1: not UTF-8
    (high / "voice.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(64))
    (high / "copy.wav").write_bytes((low / "low.00001.wav").read_bytes())
    sf.write(low / "huge.wav", _tone(1.0, sample_rate, 350, 7) * np.float32(2e37), sample_rate,
             subtype="FLOAT")
    sf.write(low / "one_hertz.wav", _tone(30.0, 1, 0.2, 8), 1)
    tone = _tone(1.0, sample_rate, 2600, 9)
    sf.write(high / "cancelling.wav", np.stack([tone, -tone], axis=1), sample_rate)
    single = root / "single"
    single.mkdir(exist_ok=True)
    sf.write(single / "only.wav", _tone(1.0, sample_rate, 900, 6), sample_rate)
    return root
