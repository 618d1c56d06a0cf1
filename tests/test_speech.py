"""Speech: shipped features, the spoken-digit model's card, speaker adaptation, bad recordings, the app's voice tab."""

from __future__ import annotations

import io
import json
import wave
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import prepared, train_here
from test_app import open_page, runs_dir  # noqa: F401 - the fixture: a private runs dir, empty caches

from workbench.config import TrainConfig
from workbench.data import audio, load, recordings
from workbench.errors import DataError
from workbench.paths import models_dir, sample_data_dir

SAMPLES = sample_data_dir() / "audio" / "fsdd"


def fsdd_wav(name: str = "3_nicolas_0.wav") -> bytes:
    return (SAMPLES / name).read_bytes()


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def resampled_stereo(data: bytes, rate: int = 44100) -> bytes:
    """An FSDD recording as a laptop would record it: 44.1 kHz, two channels."""
    from scipy.signal import resample_poly

    x = audio.read_wav(data)
    y = resample_poly(x, rate // 100, audio.RATE // 100)
    return wav_bytes(np.stack([y, 0.8 * y], axis=1).reshape(-1), rate, channels=2)


def test_features_are_deterministic_and_match_the_shipped_files():
    from workbench.data.audio import shipped_features
    from workbench.data.manifest import get_dataset_card

    index = pd.read_csv(sample_data_dir() / "datasets" / "fsdd_index.csv")
    shipped = shipped_features(get_dataset_card("fsdd"))
    assert shipped.shape == (3000, audio.FRAMES, audio.N_MELS) and shipped.dtype == np.uint8
    files = sorted(SAMPLES.glob("*.wav"))
    assert len(files) == 60  # take 0 of every digit of every speaker
    row_of = dict(zip(index["file"], index["feature_row"], strict=True))
    for path in files:
        first = audio.wav_features(path.read_bytes(), path.name)
        np.testing.assert_array_equal(first, audio.wav_features(path.read_bytes(), path.name))
        np.testing.assert_array_equal(first, shipped[row_of[path.name]], err_msg=path.name)
    assert (sample_data_dir() / "datasets" / "fsdd_logmel.npy.gz").stat().st_size < 5 * 2**20


def test_the_pretrained_model_scores_on_the_new_voice_as_its_card_says():
    import keras

    from workbench.models.audio import HELD_OUT, NAME, source_head
    from workbench.models.pretrain_audio import fsdd_arrays

    card = json.loads((models_dir() / f"{NAME}.card.json").read_text())
    assert 0 < card["params"] <= 300_000
    index, x = fsdd_arrays()
    backbone = keras.saving.load_model(models_dir() / f"{NAME}.keras", safe_mode=True, compile=False)
    kernel, bias = source_head()
    predicted = np.argmax(keras.ops.convert_to_numpy(backbone.predict(x, verbose=0, batch_size=512)) @ kernel + bias, 1)
    right = predicted == index["digit"].to_numpy()
    held = (index["speaker"] == HELD_OUT).to_numpy()
    source_test = (~held) & (index["split"] == "test").to_numpy()
    assert round(float(right[held].mean()), 4) == pytest.approx(card["heldout_accuracy"], abs=2e-3)
    assert round(float(right[source_test].mean()), 4) == pytest.approx(card["accuracy"], abs=2e-3)
    assert card["heldout_accuracy"] < card["accuracy"] - 0.1  # a new voice is harder: what adaptation is for


def test_five_recordings_per_digit_through_lora_beat_no_adaptation(store):
    before, after = [], []
    for seed in (0, 1, 2):
        prep = prepared(TrainConfig(model="spoken-digit-cnn", data="fsdd-new-voice", method="lora", limit_per_class=5,
                                    epochs=20, batch_size=16, seed=seed, export_model=False))
        _, summary = train_here(prep, store)
        before.append(summary["test_accuracy_before"])
        after.append(summary["test_accuracy"])
    assert np.mean(after) > np.mean(before) + 0.05, (before, after)


def test_a_recordings_folder_or_zip_is_a_dataset(tmp_path):
    folder = tmp_path / "voice"
    kept, errors = recordings.add_files(folder, [(p.name, p.read_bytes()) for p in sorted(SAMPLES.glob("*_theo_0.wav"))])
    assert len(kept) == 10 and errors == []
    ds = load(str(folder))
    assert ds.card.modality == "audio" and ds.x.shape == (10, *audio.FEATURE_SHAPE)
    assert list(ds.card.class_names) == [str(d) for d in range(10)]
    archive = tmp_path / "voice.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, path in enumerate(sorted(folder.glob("*.wav"))):
            zf.writestr(f"clip{i}.wav", path.read_bytes())
        zf.writestr("labels.csv", "file,label\n" + "".join(f"clip{i}.wav,{'yes' if i % 2 else 'no'}\n" for i in range(10)))
    assert list(load(str(archive)).card.class_names) == ["no", "yes"]


def test_bad_recordings_get_one_clear_line_each(tmp_path):
    other_rate = audio.read_wav(resampled_stereo(fsdd_wav()))  # 44.1 kHz stereo: resampled and mixed down
    assert abs(len(other_rate) - len(audio.read_wav(fsdd_wav()))) <= 2
    cases = {
        "not a WAV": (b"%PDF-1.7 not audio at all", "is not a WAV file"),
        "silence": (wav_bytes(np.zeros(8000), 8000), "is silent"),
        "too short": (wav_bytes(0.5 * np.ones(400), 8000), "shorter than 0.1 s"),
        "too long": (wav_bytes(0.3 * np.sin(np.arange(8000 * 11) / 3), 8000), "more than 10 s"),
        "huge": (b"RIFF" + b"\0" * (6 * 2**20), "MiB"),
    }
    for what, (data, words) in cases.items():
        with pytest.raises(DataError, match=words) as info:
            audio.wav_features(data, f"{what}.wav")
        assert "\n" not in str(info.value) and f"{what}.wav" in str(info.value)
    one_class = tmp_path / "one"
    recordings.add_recording(one_class, "3", fsdd_wav(), "a.wav")
    recordings.add_recording(one_class, "3", fsdd_wav("3_theo_0.wav"), "b.wav")
    with pytest.raises(DataError, match="one class only"):
        load(str(one_class))
    kept, errors = recordings.add_files(tmp_path / "mixed", [("4_me_1.wav", fsdd_wav("4_theo_0.wav")),
                                                             ("5_noise.wav", wav_bytes(np.zeros(8000), 8000)),
                                                             ("unnamed.wav", fsdd_wav())])
    assert len(kept) == 1 and len(errors) == 2  # the good one is kept; each bad one says why
    assert any("silent" in e for e in errors) and any("no label" in e for e in errors)


def test_record_and_upload_from_the_browser_then_train_and_try_it(runs_dir: Path):  # noqa: F811
    at = open_page("pages/data_models.py")
    for label in ("2", "7"):  # record through st.audio_input: an FSDD file at 44.1 kHz, stereo
        at.selectbox(key="voice_label").set_value(label).run()
        at.audio_input(key=f"voice_clip_{label}").set_value(
            ("clip.wav", resampled_stereo(fsdd_wav(f"{label}_nicolas_0.wav")), "audio/wav")).run()
        at.button(key="voice_keep").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("Kept" in s.value for s in at.success), [e.value for e in at.error]
    silent = wav_bytes(np.zeros(16000), 16000)
    at.audio_input(key="voice_clip_7").set_value(("clip.wav", silent, "audio/wav")).run()
    at.button(key="voice_keep").click().run()
    assert any("silent" in e.value for e in at.error)
    uploads = [(p.name, p.read_bytes(), "audio/wav") for p in sorted(SAMPLES.glob("[27]_*_0.wav"))]
    at.file_uploader(key="voice_files").set_value(uploads).run()
    at.button(key="voice_add").click().run()
    assert not at.exception and any("Added 12" in s.value for s in at.success), [e.value for e in at.error]
    [folder] = list(runs_dir.glob("uploads/*/recordings/my-voice"))
    assert len(list(folder.glob("*.wav"))) == 14  # 2 recorded + 12 uploaded; the silent one was not kept
    at.switch_page("pages/train.py").run()
    at.segmented_control(key="train_source").set_value("My recordings").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="train_model_audio").value == "spoken-digit-cnn"


def test_the_principles_and_try_it_work_on_the_speech_model(store):
    """Top-down staging, reduce-on-plateau and discriminative LRs on the spoken-digit model; then Try it
    with a recording (WAV bytes at another rate) through the finished run."""
    from workbench.explain.tryit import FINE_TUNED, TryIt

    prep = prepared(TrainConfig(model="spoken-digit-cnn", data="fsdd-new-voice", method="full", limit_per_class=5,
                                epochs=4, batch_size=16, hierarchical="top-down", lr_schedule="plateau",
                                discriminative=2.6, export_model=False))
    run_id, summary = train_here(prep, store)
    stages = store.metrics(run_id, keys=["trainable/block_1"])
    assert stages["value"].tolist()[0] == 0.0 and stages["value"].tolist()[-1] == 1.0  # block_1 unfroze last
    assert np.isfinite(summary["test_accuracy"]) and "test_accuracy_before" in summary
    tryit = TryIt.from_run(store.run_dir(run_id))
    answer = tryit.probabilities(resampled_stereo(fsdd_wav("7_nicolas_0.wav"), rate=16000))
    assert set(answer[FINE_TUNED]) == {str(d) for d in range(10)}
    assert sum(answer[FINE_TUNED].values()) == pytest.approx(1.0, abs=1e-4)


def test_a_digit_head_starts_as_the_shipped_classifier_and_other_classes_get_a_new_one(tmp_path):
    import keras

    from workbench.models.audio import source_head

    prep = prepared(TrainConfig(model="spoken-digit-cnn", data="fsdd-new-voice", method="lora", export_model=False))
    x = prep.split.x_test[:16]
    kernel, bias = source_head()
    shipped = keras.ops.convert_to_numpy(prep.task_model.backbone(x, training=False)) @ kernel + bias
    np.testing.assert_allclose(keras.ops.convert_to_numpy(prep.task_model.model(x, training=False)), shipped,
                               rtol=1e-4, atol=1e-4)  # step 0 = the model as shipped
    folder = tmp_path / "yes-no"
    for i, path in enumerate(sorted(SAMPLES.glob("*_0.wav"))[:30]):
        recordings.add_recording(folder, "yes" if i % 2 else "no", path.read_bytes(), path.name)
    other = prepared(TrainConfig(model="spoken-digit-cnn", data=str(folder), method="lora", batch_size=4,
                                 export_model=False))
    head = other.task_model.groups["head"][0]
    assert head.kernel.shape == (64, 2) and not np.allclose(keras.ops.convert_to_numpy(head.kernel), kernel[:, :2])
