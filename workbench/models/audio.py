"""spoken-digit-cnn: a small CNN this project pretrained on five FSDD voices (`workbench pretrain spoken-digit-cnn`).

It reads the 49 × 32 log-mel picture of one second of speech (`workbench.data.audio`) and was
trained on five of FSDD's six speakers; the sixth (`fsdd-new-voice`) it never heard. Speaker
adaptation is the classic PEFT case: the model does worse on a new voice, and a few of that person's
recordings, trained through LoRA on its `features` layer, adapters, BitFit or the head alone, fix
most of it (`docs/results.md`, "Speech"). ~200k parameters: a class's laptops train it in seconds.

The pretraining's own 10-digit head ships too (`spoken-digit-cnn.source-head.npz`): it is the
"before adaptation" classifier (`before_accuracy`), the source head of the forgetting probe, and the
starting point of a run's head when its classes are digits (`start_from_source_head`).
"""

from __future__ import annotations

import keras
import numpy as np

from workbench.data.audio import FEATURE_SHAPE
from workbench.models.base import BuildContext, TaskModel
from workbench.models.vision import conv_backbone, conv_task_model
from workbench.paths import models_dir

NAME = "spoken-digit-cnn"
HELD_OUT = "nicolas"  # the voice pretraining never hears (`scripts/make_fsdd_features.py`)


def audio_cnn_backbone() -> keras.Model:
    """49 × 32 × 1 log-mel → 64 features: two conv blocks and a dense layer (~201k parameters)."""
    return conv_backbone(FEATURE_SHAPE, "log_mel", "spoken_digit_cnn", flat_dropout=0.3)


def build_spoken_digit_cnn(card, ctx: BuildContext) -> TaskModel:
    if ctx.from_scratch:
        backbone = audio_cnn_backbone()
    else:
        backbone = keras.saving.load_model(models_dir() / f"{NAME}.keras", safe_mode=True, compile=False)
    task_model = conv_task_model(backbone, card, ctx, "spoken_digit_cnn_task", baseline=before_accuracy)
    start_from_source_head(task_model.groups["head"][0], ctx)
    return task_model


def start_from_source_head(head, ctx: BuildContext) -> None:
    """A head for digits the model knows starts as the pretraining's own head (its columns picked by class
    name): step 0 is the model as shipped, and a few recordings adapt it rather than teach a new classifier
    from nothing. Other classes (a user's 'yes'/'no'), regression or a from-scratch run: a new head."""
    digits = [str(d) for d in range(10)]
    names = ctx.class_names or ()
    source = source_head()
    if ctx.from_scratch or ctx.task != "classification" or source is None or not names or any(n not in digits for n in names):
        return
    columns = [digits.index(n) for n in names]
    head.kernel.assign(source[0][:, columns])
    head.bias.assign(source[1][columns])


def source_head(directory=None) -> tuple[np.ndarray, np.ndarray] | None:
    path = (directory or models_dir()) / f"{NAME}.source-head.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as saved:
        return saved["kernel"].astype("float32"), saved["bias"].astype("float32")


def before_accuracy(prepared) -> dict[str, float]:
    """The pretrained classifier's accuracy on this run's test split, before any training: what a new voice
    gets from the model as shipped. Only for the spoken-digit model on data whose classes are digits it
    knows (by name, so a user's recordings of '3' and '7' map to its classes 3 and 7); else {}."""
    tm, dataset = prepared.task_model, prepared.dataset
    head = source_head()
    names = dataset.card.class_names or ()
    if tm.card.name != NAME or head is None or not names or any(n not in {str(d) for d in range(10)} for n in names):
        return {}
    x, y = prepared.split.x_test, prepared.split.y_test
    if len(y) == 0 or prepared.config.from_scratch:
        return {}
    base = keras.saving.load_model(models_dir() / f"{NAME}.keras", safe_mode=True, compile=False)
    features = np.asarray(keras.ops.convert_to_numpy(base.predict(np.asarray(x, "float32"), batch_size=256, verbose=0)))
    digits = np.argmax(features @ head[0] + head[1], axis=1)
    truth = np.array([int(names[i]) for i in np.asarray(y, "int64")])
    return {"test_accuracy_before": round(float(np.mean(digits == truth)), 4)}
