"""Sound: a piece played on a sampled grand piano, as WAV or MP3 bytes.

The piano is FluidR3's grand (MIT), cut out of the General MIDI set and installed with the
package (`soundfonts/`); nothing is downloaded. Synthesis is symusic's (through the tokenizer
package, the one that reads MIDI); the files are written by libsndfile (`soundfile`), whose
wheels carry an MP3 encoder.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pianomuse.limits import MAX_AUDIO_SECONDS
from pianomuse.tokenizer import MidiSource
from pianomuse.tokenizer.synth import synthesize

SOUNDFONT = Path(__file__).parent / "soundfonts" / "piano.sf2"
SAMPLE_RATE = 44_100  # Hz: the soundfont's own rate, so no sample is resampled for it
# The synthesizer sums voices without a limiter (a dense chord of song 001 peaks at 1.7):
# a piece that would clip is turned down as a whole to this peak (-1 dBFS), which keeps
# its dynamics; a quieter one is left as it is.
PEAK = 10 ** (-1 / 20)


@dataclass(frozen=True)
class AudioFormat:
    """One file format libsndfile writes."""

    format: str  # libsndfile's container name
    subtype: str  # its sample encoding
    media_type: str  # what a web server calls it


FORMATS = {
    "wav": AudioFormat("WAV", "PCM_16", "audio/wav"),
    "mp3": AudioFormat("MP3", "MPEG_LAYER_III", "audio/mpeg"),
}


def render(src: MidiSource) -> np.ndarray:
    """The piece as stereo samples at `SAMPLE_RATE`, (S, 2) float32 within [-1, 1]."""
    samples = synthesize(src, SOUNDFONT, SAMPLE_RATE, MAX_AUDIO_SECONDS).T  # (2, S) -> (S, 2)
    peak = float(np.abs(samples).max(initial=0.0))
    if peak > PEAK:
        samples = samples * np.float32(PEAK / peak)
    return np.ascontiguousarray(samples, dtype=np.float32)


def encode(samples: np.ndarray, fmt: str) -> bytes:
    """(S, 2) samples as the bytes of a `FORMATS` file."""
    import soundfile

    f = FORMATS[fmt]
    out = io.BytesIO()
    soundfile.write(out, samples, SAMPLE_RATE, format=f.format, subtype=f.subtype)
    return out.getvalue()


def audio_file(src: MidiSource, fmt: str = "wav") -> bytes:
    """A MIDI piece as a sound file."""
    return encode(render(src), fmt)
