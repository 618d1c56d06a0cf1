"""Derive the spoken-digit files under ``sample_data/`` from the Free Spoken Digit Dataset WAVs.

    .venv/bin/python scripts/make_fsdd_features.py [--fsdd ../shared/data/fsdd]

Writes, byte for byte the same on every run (sorted files, gzip with mtime=0, fixed CSV format):

- ``datasets/fsdd_index.csv``: one row per recording (feature_row, file, digit, speaker, take, split)
- ``datasets/fsdd_logmel.npy.gz``: uint8 (3000, 49, 32) log-mel features (`workbench.data.audio`)
- ``audio/fsdd/``: take 0 of every digit of every speaker, the original WAVs (Train page playback and
  the tests' real recordings)
- the ``fsdd-*`` entries and file checksums in ``manifest.json`` (``make_sample_data.py`` keeps them)

FSDD is CC BY-SA 4.0 (Zohar Jackson et al.); the derived files ship under the same license.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.data import audio  # noqa: E402

OUT = ROOT / "sample_data"
HELD_OUT = "nicolas"  # the new voice: pretraining never hears him
CITATION = ("Zohar Jackson, César Souza, Jason Flaks, Yuxin Pan, Hereman Nicolas and Adhish Thite. "
            "Jakobovski/free-spoken-digit-dataset: v1.0.8 (2018). Zenodo. https://doi.org/10.5281/zenodo.1342401")
SOURCE = "Free Spoken Digit Dataset (GitHub Jakobovski/free-spoken-digit-dataset, commit 26eb9aaf76e8)"
LICENSE = "CC BY-SA 4.0 (FSDD; the derived features ship under the same license)"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(fsdd: Path) -> tuple[pd.DataFrame, np.ndarray]:
    files = sorted((fsdd / "recordings").glob("*.wav"),
                   key=lambda p: (p.stem.split("_")[1], int(p.stem.split("_")[0]), int(p.stem.split("_")[2])))
    rows, features = [], []
    for i, path in enumerate(files):
        digit, speaker, take = path.stem.split("_")
        features.append(audio.wav_features(path.read_bytes(), path.name))
        rows.append({"feature_row": i, "file": path.name, "digit": int(digit), "speaker": speaker, "take": int(take),
                     "split": "test" if int(take) < 5 else "train"})  # FSDD's official split: takes 0-4 test
    return pd.DataFrame(rows), np.stack(features)


def write_gzip(data: bytes, path: Path) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    path.write_bytes(buf.getvalue())


def cards(index: pd.DataFrame) -> list[dict]:
    speakers = sorted(index["speaker"].unique())
    source_speakers = [s for s in speakers if s != HELD_OUT]
    common = {"modality": "audio", "task": "classification", "file": "datasets/fsdd_index.csv",
              "input_columns": ["feature_row"], "label_column": "digit", "class_names": [str(d) for d in range(10)],
              "source": SOURCE, "license": LICENSE, "citation": CITATION,
              "features_file": "datasets/fsdd_logmel.npy.gz", "feature_shape": list(audio.FEATURE_SHAPE),
              "audio_dir": "audio/fsdd"}
    n_source = int(index["speaker"].isin(source_speakers).sum())
    n_held = int((index["speaker"] == HELD_OUT).sum())
    return [
        {"name": "fsdd", "title": "Spoken digits (FSDD, all 6 speakers)", "rows": len(index),
         "description": "3,000 recordings of the digits 0-9, 8 kHz, six speakers, 50 of each digit each: "
                        "1-second log-mel spectrograms (49 frames x 32 mel bands).", **common},
        {"name": "fsdd-pretrain", "title": f"Spoken digits: the five pretraining voices (all but {HELD_OUT})",
         "rows": n_source, "filter": {"column": "speaker", "in": source_speakers},
         "description": f"What the spoken-digit model was pretrained on: {', '.join(source_speakers)}.", **common},
        {"name": "fsdd-new-voice", "title": f"Spoken digits: a new voice ({HELD_OUT}, never heard in pretraining)",
         "rows": n_held, "filter": {"column": "speaker", "in": [HELD_OUT]},
         "description": f"Speaker adaptation: the 500 recordings of {HELD_OUT} (Belgian French accent). Set "
                        "'training examples per class' (e.g. 5) for the few recordings a person would make.",
         **common},
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsdd", type=Path, default=ROOT.parent / "shared" / "data" / "fsdd")
    args = parser.parse_args(argv)
    index, features = build(args.fsdd)
    (OUT / "datasets").mkdir(exist_ok=True)
    index_path, features_path = OUT / "datasets" / "fsdd_index.csv", OUT / "datasets" / "fsdd_logmel.npy.gz"
    index.to_csv(index_path, index=False, lineterminator="\n")
    buf = io.BytesIO()
    np.save(buf, features, allow_pickle=False)
    write_gzip(buf.getvalue(), features_path)
    samples = OUT / "audio" / "fsdd"
    shutil.rmtree(samples, ignore_errors=True)
    samples.mkdir(parents=True)
    for name in index.loc[index["take"] == 0, "file"]:
        shutil.copyfile(args.fsdd / "recordings" / name, samples / name)
    shutil.copyfile(args.fsdd / "SOURCE.md", samples / "SOURCE.md")

    manifest_path = OUT / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["datasets"] = [d for d in manifest["datasets"] if d.get("modality") != "audio"] + cards(index)
    for path, rows in ((index_path, len(index)), (features_path, len(features))):
        manifest["files"][f"datasets/{path.name}"] = {"rows": rows, "bytes": path.stat().st_size, "sha256": sha256(path)}
    manifest["sources"]["fsdd@26eb9aaf76e8"] = {"file": "recordings/*.wav (3,000 WAVs)", "sha256": None}
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(index)} recordings -> {features_path.name} ({features_path.stat().st_size / 1e6:.2f} MB), "
          f"{index_path.name}, {len(list(samples.glob('*.wav')))} sample WAVs")


if __name__ == "__main__":
    main()
