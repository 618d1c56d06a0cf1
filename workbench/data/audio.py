"""Spoken digits: WAV files → the compact log-mel features every audio model here reads.

Why these features (numpy only, no TensorFlow): the shipped dataset, a student's browser recording
and `scripts/make_fsdd_features.py` must give the same bytes for the same audio, on any machine, with
no heavy import on the page that records. One second at 8 kHz (FSDD's rate; 99 % of its clips are
shorter than 0.92 s) around the loudest part of the clip, a 256-sample Hann window every 160 samples
(32 ms / 20 ms: 49 frames), 32 mel bands up to 4 kHz, log power in dB relative to the clip's own peak
(loudness-invariant: a phone and a headset give the same picture), clipped at −80 dB and stored as
uint8 (0.31 dB steps, below what separates digits). 49 × 32 = 1,568 bytes a clip: all 3,000 FSDD clips
ship in ~3 MB gzipped. MFCCs would decorrelate the bands but a CNN learns that itself from the
log-mel image; log-mel keeps the picture a student can read (the spectrogram the Train page shows).

A user's WAV is checked first (`read_wav`): not a WAV, too big, silence, too short or too long each
raise one `DataError` line; another sample rate is resampled (polyphase, scipy), stereo mixed down.
"""

from __future__ import annotations

import gzip
import io
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from workbench.errors import DataError

RATE = 8000  # Hz: FSDD's rate, and what every clip is resampled to
WINDOW = RATE  # samples: the one second a clip is cut or padded to
N_FFT, HOP, N_MELS = 256, 160, 32
FRAMES = 1 + (WINDOW - N_FFT) // HOP  # 49
FEATURE_SHAPE = (FRAMES, N_MELS, 1)
FLOOR_DB = 80.0
MAX_BYTES = 5 * 2**20  # a spoken digit is tens of KB; 5 MiB is ~5 min of 8 kHz mono
MIN_SECONDS, MAX_SECONDS = 0.1, 10.0
SILENCE_PEAK = 0.01  # peak amplitude (full scale 1.0) below which a clip holds no speech


def read_wav(data: bytes, name: str = "recording.wav") -> np.ndarray:
    """Mono float32 samples at `RATE` in [-1, 1] from a WAV file's bytes, or one `DataError` line."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    if len(data) > MAX_BYTES:
        raise DataError(f"{name} is {len(data) / 2**20:.1f} MiB, more than the {MAX_BYTES // 2**20} MiB a spoken "
                        f"digit needs: record or cut one word per file. Received: {name}")
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise DataError(f"{name} is not a WAV file: save or convert it as .wav (PCM). Received: {data[:12]!r}")
    try:
        rate, samples = wavfile.read(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - scipy raises ValueError/TypeError for damaged or exotic files
        raise DataError(f"{name} could not be read as a WAV ({exc}): save it again as 16-bit PCM. "
                        f"Received: {name}") from None
    x = _to_float(np.asarray(samples))
    if x.ndim == 2:
        x = x.mean(axis=1)  # stereo (or more channels): mixed down
    if x.size == 0 or x.size / rate < MIN_SECONDS:
        raise DataError(f"{name} is {x.size / max(rate, 1):.2f} s long, shorter than {MIN_SECONDS} s: record the "
                        f"whole word. Received: {name}")
    if x.size / rate > MAX_SECONDS:
        raise DataError(f"{name} is {x.size / rate:.1f} s long, more than {MAX_SECONDS:.0f} s: record one digit "
                        f"per file. Received: {name}")
    if rate != RATE:
        g = int(np.gcd(int(rate), RATE))
        x = resample_poly(x, RATE // g, int(rate) // g).astype(np.float32)
    if not np.isfinite(x).all() or float(np.max(np.abs(x))) < SILENCE_PEAK:
        raise DataError(f"{name} is silent (its loudest sample is below {SILENCE_PEAK:.0%} of full scale): check "
                        f"the microphone and record again. Received: {name}")
    return x.astype(np.float32)


def _to_float(samples: np.ndarray) -> np.ndarray:
    if samples.dtype == np.uint8:
        return (samples.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(samples.dtype, np.integer):
        return samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
    return samples.astype(np.float32)


def centre_window(x: np.ndarray) -> np.ndarray:
    """The `WINDOW` samples around the clip's loudest part (zero-padded when shorter)."""
    if x.size <= WINDOW:
        out = np.zeros(WINDOW, np.float32)
        start = (WINDOW - x.size) // 2
        out[start:start + x.size] = x
        return out
    energy = np.convolve(x.astype(np.float64) ** 2, np.ones(WINDOW), mode="valid")  # energy of every window
    start = int(np.argmax(energy))
    return x[start:start + WINDOW].astype(np.float32)


def mel_filters() -> np.ndarray:
    """(N_FFT // 2 + 1, N_MELS) triangular filters on the HTK mel scale, 0 Hz – RATE / 2."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(0.0), mel(RATE / 2), N_MELS + 2))
    freqs = np.linspace(0.0, RATE / 2, N_FFT // 2 + 1)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - low) / (centre - low)
    down = (high - freqs[None, :]) / (high - centre)
    return np.maximum(0.0, np.minimum(up, down)).T


def log_mel(x: np.ndarray) -> np.ndarray:
    """uint8 (FRAMES, N_MELS): the clip's log-mel picture (see the module docstring)."""
    clip = centre_window(np.asarray(x, np.float32)).astype(np.float64)
    frames = np.lib.stride_tricks.sliding_window_view(clip, N_FFT)[::HOP][:FRAMES]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(N_FFT), axis=1)) ** 2
    power = spectrum @ mel_filters()
    db = 10.0 * np.log10(np.maximum(power, 1e-12))
    db = np.clip(db - db.max(), -FLOOR_DB, 0.0)
    return np.round((db + FLOOR_DB) * (255.0 / FLOOR_DB)).astype(np.uint8)


def model_input(features: np.ndarray) -> np.ndarray:
    """uint8 features (N, FRAMES, N_MELS) → the float32 (N, FRAMES, N_MELS, 1) in [0, 1] the models read."""
    return (np.asarray(features, np.float32) / np.float32(255.0))[..., None]


def wav_features(data: bytes, name: str = "recording.wav") -> np.ndarray:
    return log_mel(read_wav(data, name))


LABEL_IN_NAME = re.compile(r"^([A-Za-z0-9]+)[_\- ]")


def label_from_name(name: str) -> str | None:
    """FSDD-style names carry the label first: '3_theo_12.wav' → '3'; None when the name has no such part
    ('recording.wav': a name without '_', '-' or ' ' is no label)."""
    match = LABEL_IN_NAME.match(Path(name).stem)
    return match.group(1) if match and Path(name).suffix.lower() == ".wav" else None


def sample_recordings(card, limit: int = 4) -> list[tuple[str, str, bytes]]:
    """(label, file name, WAV bytes) of a few of an audio dataset's own recordings, one per class first:
    a registered view's from its `audio_dir` (its own speakers only), a user's folder from the folder."""
    from workbench.paths import sample_data_dir

    folder = sample_data_dir() / card.audio_dir if card.audio_dir else Path(card.file)
    if not folder.is_dir():
        return []
    speakers = set((card.filter or {}).get("in", [])) if (card.filter or {}).get("column") == "speaker" else None
    chosen: dict[str, Path] = {}
    for path in sorted(folder.glob("*.wav")):
        label = label_from_name(path.name)
        parts = path.stem.split("_")
        if label is None or (speakers is not None and (len(parts) < 2 or parts[1] not in speakers)):
            continue
        chosen.setdefault(label, path)
    return [(label, path.name, path.read_bytes()) for label, path in list(chosen.items())[:limit]]


def shipped_features(card) -> np.ndarray:
    """A registered audio view's uint8 feature rows (its `features_file`), read once per process."""
    from workbench.paths import sample_data_dir

    path = sample_data_dir() / (card.features_file or "")
    if not card.features_file or not path.is_file():
        raise DataError(f"The features of {card.name!r} are missing; run scripts/make_fsdd_features.py. "
                        f"Received: {path}")
    return _read_features(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=2)
def _read_features(path: str, mtime_ns: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.load(io.BytesIO(f.read()), allow_pickle=False)
