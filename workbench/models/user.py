"""A user's own `.keras` model: loaded in safe mode and checked against the dataset before training.

Safe mode refuses Lambda layers (they can carry arbitrary code); nothing is ever unpickled. The model
must take the dataset's inputs and produce one output per class (or one value for regression); its
last weighted layer becomes the head and every other weighted layer its own layer group. When its
input shape differs from the dataset's, the trainer first reshapes the data if one obvious transform
exists (`workbench.data.shapes`, reading `input_shape` here) and notes which.
"""

from __future__ import annotations

import zipfile
from functools import lru_cache
from pathlib import Path

import keras
import numpy as np

from workbench.errors import ConfigError, ModelError, received
from workbench.models.base import BuildContext, ModelCard, TaskModel


def load_user_model(path: str | Path) -> keras.Model:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Model file not found: check the path. {received(model=str(path))}")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path) and path.read_bytes()[:4] == b"PK\x03\x04":
        raise ModelError(f"The model file is damaged or truncated (an incomplete zip archive): save or copy it "
                         f"again. {received(model=path.name)}")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ModelError(f"Not a Keras model file: save your model with `model.save('name.keras')` "
                         f"(Keras 3 format). {received(model=path.name)}")
    from workbench.peft import register_layers

    register_layers()  # a workbench export (LoRA, prompt layers) loads as a user model too
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as exc:
        if "lambda" in str(exc).lower() or "safe_mode" in str(exc):
            raise ModelError(f"Refused: the model contains a Lambda layer, which can run arbitrary code; "
                             f"rewrite it as a registered custom layer. {received(model=path.name)}") from None
        raise ModelError(f"Cannot load the model ({_first_line(exc)}): re-save it with Keras 3. "
                         f"{received(model=path.name)}") from None
    except (zipfile.BadZipFile, OSError, KeyError, TypeError, EOFError) as exc:
        raise ModelError(f"The model file is damaged or truncated ({_first_line(exc)}): save it again. "
                         f"{received(model=path.name)}") from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"The file holds a {type(model).__name__}, not a model. {received(model=path.name)}")
    return model


def input_shape(path: str | Path) -> tuple[int | None, ...]:
    """The per-example input shape of the model file (None: any size), e.g. (8, 8, 1).

    Cached by file version: the trainer asks before splitting the data and builds the model after.
    """
    path = Path(path)
    if not path.is_file():
        load_user_model(path)  # raises the usual "not found" / "is a folder" message
    stat = path.stat()
    return _input_shape(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _input_shape(path: str, mtime_ns: int, size: int) -> tuple[int | None, ...]:
    model = load_user_model(path)
    _one_input(model, Path(path).name)
    return tuple(None if d is None else int(d) for d in model.inputs[0].shape[1:])


def _one_input(model: keras.Model, label: str) -> None:
    if len(model.inputs) != 1:
        raise ModelError(f"The model has {len(model.inputs)} inputs; it needs exactly one. {received(model=label)}")


def fit_data(dataset, path: str | Path, *, augment: bool = False):
    """`dataset` in the shape the model file takes, its note added to `dataset.notes` (text: unchanged).

    See `workbench.data.shapes` for the transforms; a shape none of them reaches is a `ModelError`.
    Image augmentation shifts pixels in 2-D, so flattened images cannot be augmented.
    """
    from workbench.data.shapes import fit_to_model, is_image_layout

    if dataset.card.modality == "text":
        return dataset  # `check_fits` refuses a text dataset with its own message
    label = Path(path).name
    dataset, _ = fit_to_model(dataset, input_shape(path), label)
    if augment and dataset.card.modality == "image" and not is_image_layout(dataset.x):
        raise ConfigError(f"augment shifts images, but your model takes them flattened to "
                          f"{tuple(dataset.x.shape[1:])}: turn augmentation off. {received(augment=True, model=label)}")
    return dataset


def user_card(path: str | Path, model: keras.Model, modality: str) -> ModelCard:
    groups = tuple(_group_names(_weighted_layers(model)))
    return ModelCard(
        name=Path(path).name, title=f"Your model ({Path(path).name})", modality=modality,
        architecture=model.__class__.__name__, params=int(model.count_params()), pretrained=True,
        source="uploaded file", source_task="unknown", source_metric="unknown", license="yours",
        description="A user-supplied Keras model, loaded with safe_mode=True.",
        layer_groups=groups, lora_targets=tuple(layer.name for layer in _weighted_layers(model)[:-1]
                                                 if isinstance(layer, keras.layers.Dense)),
        file=str(path))


def build_user_model(path: str | Path, ctx: BuildContext, modality: str) -> TaskModel:
    model = load_user_model(path)
    check_fits(model, ctx, modality, Path(path).name)
    if ctx.from_scratch:
        model = keras.models.clone_model(model)
    layers = _weighted_layers(model)
    names = _group_names(layers)
    groups = {name: [layer] for name, layer in zip(names, layers, strict=True)}
    last = layers[-1]
    from_logits = getattr(getattr(last, "activation", None), "__name__", "") != "softmax"
    return TaskModel(model=model, groups=groups, card=user_card(path, model, modality),
                     encode=lambda x: np.asarray(x, dtype="float32"), from_logits=from_logits)


def check_fits(model: keras.Model, ctx: BuildContext, modality: str, label: str) -> None:
    """Input shape must match the data (after `workbench.data.shapes` adapted it; None dims match any
    size), output width the number of classes (or 1 for regression)."""
    if modality == "text":
        raise ModelError(f"Your own .keras models work with image and tabular datasets; for text, pick "
                         f"`tiny-bert` or `minilm-l6` (they bring their tokenizers). {received(model=label)}")
    _one_input(model, label)
    expected = tuple(ctx.x_train.shape[1:])
    got = tuple(model.inputs[0].shape[1:])
    if len(got) != len(expected) or any(g is not None and g != e for g, e in zip(got, expected, strict=False)):
        raise ModelError(f"The model's input shape {got} does not fit the dataset's {expected}: rebuild the "
                         f"model's Input layer with shape={expected}. {received(model=label)}")
    units = int(model.outputs[0].shape[-1])
    if units != ctx.output_units:
        what = f"{ctx.num_classes} classes" if ctx.task == "classification" else "1 regression target"
        raise ModelError(f"The model outputs {units} values but the dataset has {what}: give its last layer "
                         f"{ctx.output_units} units. {received(model=label)}")
    if not _weighted_layers(model):
        raise ModelError(f"The model has no trainable weights. {received(model=label)}")


def _weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if layer.weights]


def _group_names(layers: list) -> list[str]:
    return [layer.name for layer in layers[:-1]] + ["head"]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
