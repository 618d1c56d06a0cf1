"""A person's own recordings as a dataset: a folder (or zip) of WAVs, labels from file names or a CSV.

Why a folder of WAVs and not a features file: the recordings stay playable and can be re-derived, and
a folder a student fills from the browser is the same thing a researcher points `--data` at. Labels
come from `labels.csv` (columns `file,label`) when there is one, else from each name's first part
(`3_ana_1.wav` → "3", FSDD's convention). Every file is checked (`audio.read_wav`); one bad file stops a
load with its name and what to do, while `add_recording` refuses just that recording and keeps the rest.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

import numpy as np

from workbench.data import audio
from workbench.errors import DataError

MAX_FILES = 5000
MAX_ZIP_BYTES = 200 * 2**20
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,40}$")


def is_audio_source(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() or (p.suffix.lower() == ".zip" and p.is_file())


def _labels_csv(data: bytes) -> dict[str, str]:
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig", "replace"))))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise DataError("labels.csv needs the columns file,label (one row per WAV): fix its header. "
                        f"Received: {list(rows[0]) if rows else 'an empty file'}")
    return {Path(r["file"]).name: str(r["label"]).strip() for r in rows if r.get("file")}


def _entries(path: Path) -> list[tuple[str, bytes]]:
    """(name, bytes) of every file in the folder or zip (zip: never extracted to disk; sizes capped)."""
    if path.is_dir():
        return [(p.name, p.read_bytes()) for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir() and not Path(i.filename).name.startswith(".")]
            if len(infos) > MAX_FILES or sum(i.file_size for i in infos) > MAX_ZIP_BYTES:
                raise DataError(f"{path.name} holds {len(infos)} files, {sum(i.file_size for i in infos) / 2**20:.0f} MiB "
                                f"unpacked: at most {MAX_FILES} files and {MAX_ZIP_BYTES // 2**20} MiB. Received: {path.name}")
            return sorted((Path(i.filename).name, zf.read(i)) for i in infos)
    except zipfile.BadZipFile:
        raise DataError(f"{path.name} is not a readable zip: zip the WAVs again. Received: {path.name}") from None


def load_folder(path: str | Path):
    """A `Dataset` (modality audio) from a folder or zip of WAVs."""
    from workbench.data.loading import CleaningReport, Dataset
    from workbench.data.manifest import DatasetCard

    path = Path(path)
    entries = _entries(path)
    given = next((_labels_csv(data) for name, data in entries if name.lower() == "labels.csv"), None)
    wavs = [(name, data) for name, data in entries if name.lower().endswith(".wav")]
    if not wavs:
        raise DataError(f"{path.name} holds no .wav files: add recordings (one spoken digit each). Received: {path}")
    features, labels, report = [], [], CleaningReport(rows_in=len(wavs))
    for name, data in wavs:
        label = given.get(name) if given is not None else audio.label_from_name(name)
        if not label:
            raise DataError(f"{name} has no label: name it '<label>_<anything>.wav' (e.g. 3_me_1.wav) or list it in "
                            f"labels.csv. Received: {name}")
        features.append(audio.wav_features(data, name))
        labels.append(label)
    names = sorted(set(labels), key=lambda n: (0, int(n), n) if n.isdigit() else (1, 0, n))
    if len(names) < 2:
        raise DataError(f"{path.name} has recordings of one class only ({names[0]!r}): record at least two different "
                        f"digits to train a classifier. Received: {len(wavs)} recordings")
    report.rows_out = len(wavs)
    card = DatasetCard(name=path.stem, title=f"Recordings: {path.stem}", modality="audio", task="classification",
                       file=str(path), input_columns=("recording",), label_column="label", class_names=tuple(names),
                       rows=len(wavs), source=f"user recordings {path.name}", license="user-provided", citation="",
                       description=f"{len(wavs)} recordings of {len(names)} classes ({', '.join(names)}).",
                       feature_shape=audio.FEATURE_SHAPE)
    y = np.array([names.index(label) for label in labels], dtype=np.int64)
    return Dataset(card=card, x=audio.model_input(np.stack(features)), y=y, report=report)


def add_recording(folder: Path, label: str, data: bytes, name: str = "recording.wav") -> Path:
    """Check one recording and keep it in a personal dataset folder as `<label>_<n>.wav`; DataError if unusable."""
    label = str(label).strip()
    if not SAFE_NAME.match(label):
        raise DataError(f"A label is a short word of letters and digits (e.g. 3 or yes): rename it. Received: {label!r}")
    samples = audio.read_wav(data, name)  # raises for a bad file: nothing is written
    folder.mkdir(parents=True, exist_ok=True)
    taken = {p.name for p in folder.glob(f"{label}_*.wav")}
    n = next(i for i in range(len(taken) + 1) if f"{label}_{i}.wav" not in taken)
    target = folder / f"{label}_{n}.wav"
    target.write_bytes(pcm16_wav(samples))
    return target


def pcm16_wav(samples: np.ndarray) -> bytes:
    """8 kHz mono 16-bit WAV bytes (what every kept recording is stored as, whatever it came as)."""
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(audio.RATE)
        out.writeframes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def add_files(folder: Path, files: list[tuple[str, bytes]]) -> tuple[list[Path], list[str]]:
    """Several uploads (WAVs, or zips of WAVs) into a personal dataset: (kept paths, one error line per refused
    file). Labels from names or a labels.csv among them."""
    expanded: list[tuple[str, bytes]] = []
    errors: list[str] = []
    for name, data in files:
        if name.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    infos = [i for i in zf.infolist() if not i.is_dir() and not Path(i.filename).name.startswith(".")]
                    if len(infos) > MAX_FILES or sum(i.file_size for i in infos) > MAX_ZIP_BYTES:
                        errors.append(f"{name}: more than {MAX_FILES} files or {MAX_ZIP_BYTES // 2**20} MiB unpacked")
                        continue
                    expanded += [(Path(i.filename).name, zf.read(i)) for i in infos]
            except zipfile.BadZipFile:
                errors.append(f"{name} is not a readable zip: zip the WAVs again")
        else:
            expanded.append((name, data))
    given = next((_labels_csv(data) for name, data in expanded if name.lower() == "labels.csv"), {})
    kept = []
    for name, data in expanded:
        if name.lower() == "labels.csv":
            continue
        label = given.get(name) or audio.label_from_name(name)
        if not label:
            errors.append(f"{name} has no label: name it '<label>_<anything>.wav' (e.g. 3_me_1.wav) or add labels.csv")
            continue
        try:
            kept.append(add_recording(folder, label, data, name))
        except DataError as exc:
            errors.append(str(exc))
    return kept, errors
