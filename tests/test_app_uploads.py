"""The app's uploads, small-data warnings and duration estimate, as a user sees them (AppTest).

Uploads: refusals are visible text in plain words, refused files are neither kept nor offered again,
and each browser session sees only its own files (a class shares one server).
"""

from __future__ import annotations

from pathlib import Path

from test_app import open_page, runs_dir  # noqa: F401 - the fixture: a private runs dir, empty caches

from workbench.config import TrainConfig
from workbench.runs import RunStore

GOOD_CSV = "review,sentiment\n" + "\n".join(
    f"{'great fun' if i % 2 else 'awful bore'} {i},{'pos' if i % 2 else 'neg'}" for i in range(200)) + "\n"
JARGON = ("expected after", "Error tokenizing", "C error", "Traceback")


def kept(runs_dir: Path, kind: str = "datasets") -> list[Path]:  # noqa: F811
    """Accepted uploads of every session (pending ones included, so a leftover shows up too)."""
    return sorted(runs_dir.glob(f"uploads/*/{kind}/**/*{'.csv' if kind == 'datasets' else '.keras'}"))


def reuse_offers(at) -> list[str]:
    """The "reuse an earlier upload" choices the Train page's CSV source offers this session."""
    at.switch_page("pages/train.py").run()
    at.segmented_control(key="train_source").set_value("CSV file").run()
    assert not at.exception, [e.value for e in at.exception]
    boxes = [b for b in at.selectbox if b.key == "train_csv_earlier"]
    return list(boxes[0].options) if boxes else []


def test_a_pdf_is_refused_in_plain_visible_words_and_not_kept(runs_dir: Path) -> None:  # noqa: F811
    at = open_page("pages/data_models.py")
    at.file_uploader(key="dm_csv_file").upload("grades.csv", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>", "text/csv")
    at.run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("This file is not a CSV table (it looks like a PDF): export the table as CSV")
    assert "grades.csv" in error and not any(j in error for j in JARGON)
    assert kept(runs_dir) == []


def test_a_refused_csv_is_not_offered_for_reuse(runs_dir: Path) -> None:  # noqa: F811
    at = open_page("pages/data_models.py")
    at.file_uploader(key="dm_csv_file").upload("ragged.csv", b"text,label\nhello,a\nworld,b,extra\nagain,a\n",
                                               "text/csv")
    at.run()
    assert not at.exception
    assert at.error and not any(j in e.value for e in at.error for j in JARGON), [e.value for e in at.error]
    assert kept(runs_dir) == []
    at.file_uploader(key="dm_csv_file").set_value(None).run()
    assert reuse_offers(at) == []


def test_uploads_belong_to_the_session_that_made_them(runs_dir: Path) -> None:  # noqa: F811
    mine = open_page("pages/data_models.py")
    mine.file_uploader(key="dm_csv_file").upload("reviews.csv", GOOD_CSV.encode(), "text/csv")
    mine.run()
    assert not mine.exception and not mine.error, [e.value for e in mine.error]
    assert mine.success and "Usable" in mine.success[0].value
    [stored] = kept(runs_dir)
    assert stored.parent.name == "datasets" and stored.name.startswith("reviews-")
    assert reuse_offers(mine) == [stored.name]
    theirs = open_page("pages/train.py")
    assert reuse_offers(theirs) == []


def test_train_page_warns_about_tiny_evaluation_splits(runs_dir: Path) -> None:  # noqa: F811
    rows = "\n".join(f"{'great fun' if i % 2 else 'awful bore'} {i},{'pos' if i % 2 else 'neg'}" for i in range(60))
    at = open_page("pages/train.py")
    at.segmented_control(key="train_source").set_value("CSV file").run()
    at.file_uploader(key="train_csv_file").upload("few.csv", f"review,sentiment\n{rows}\n".encode(), "text/csv")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("Validation accuracy over 10 rows moves in steps of 10 %") for w in warnings), warnings
    assert any(w.startswith("Test accuracy over 10 rows moves in steps of 10 %") for w in warnings), warnings


def test_train_page_estimates_the_duration_from_earlier_runs(runs_dir: Path) -> None:  # noqa: F811
    at = open_page("pages/train.py")
    at.selectbox(key="train_data").set_value("mnist-5k-unseen").run()
    assert any("no estimate yet: the first lora run of mnist-cnn on this machine calibrates it" in m.value
               for m in at.markdown)
    from workbench.train.device import device_name

    store = RunStore(runs_dir)
    run_id = store.create_run(TrainConfig(model="mnist-cnn", data="mnist-5k-unseen").to_dict(), "earlier")
    store.update_run(run_id, status="completed", device=device_name(), started=100.0, ended=130.0,
                     final_metrics={"steps": 100, "fit_s": 20.0, "steps_per_s": 5.0})
    at.run()
    steps = int(next(m.value for m in at.metric if m.label == "Steps").replace(",", ""))
    seconds = round(10 + 0.2 * steps)
    minutes, rest = divmod(seconds, 60)
    expected = f"≈ {minutes}m {rest:02d}s" if minutes else f"≈ {rest}s"
    assert any(f"{expected} on this machine (from 1 earlier lora run of mnist-cnn)" in m.value
               for m in at.markdown), [m.value for m in at.markdown if "Estimated" in m.value]
