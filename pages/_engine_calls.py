"""Engine calls the pages make, cached where the answer is costly: previews, layer shapes, method facts.

Why a module of its own: building a model to count its parameters or read its layer shapes takes
seconds, so those answers are memoised with `st.cache_data` (keyed by the config or model name) and
shared by every session; the cheap calls sit beside them so the pages ask the engine in one place.
Engine modules are imported inside the functions: a page that never previews loads no model code.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pages._format import status_label
from pages._resources import manager  # also installs the cheaper Keras cleanup before any model is built
from workbench.errors import WorkbenchError


@st.cache_data(show_spinner="Building the model to count its parameters…", max_entries=64)
def preview(config: dict[str, Any]):
    """`workbench.preview.preview` for a config dict (name and tags do not change it)."""
    from workbench.config import TrainConfig
    from workbench.preview import preview as engine_preview

    return engine_preview(TrainConfig.from_dict(config))


@st.cache_data(show_spinner="Building the model to read its layer shapes…", max_entries=16)
def lora_shapes(model: str) -> pd.DataFrame:
    """The (d_in, d_out) of every LoRA target layer of a registered model, grouped by layer name."""
    from workbench import data as wdata
    from workbench.models import BuildContext, build_task_model, get_model_card
    from workbench.peft.lora_layers import matrix_shape

    card = get_model_card(model)
    dataset = wdata.load(next(d.name for d in wdata.list_datasets() if d.modality == card.modality))
    ctx = BuildContext(task=dataset.card.task, num_classes=dataset.num_classes, x_train=dataset.x[:64],
                       y_train=dataset.y[:64])
    task_model = build_task_model(model, ctx, card.modality)
    rows = [(layer.name, *matrix_shape(layer)) for layer in task_model.lora_target_layers(None)]
    frame = pd.DataFrame(rows, columns=["layer", "d_in", "d_out"])
    return frame.groupby(["layer", "d_in", "d_out"], sort=False).size().rename("count").reset_index()


@st.cache_data(show_spinner=False)
def supports(method: str, **options: Any) -> bool:
    """Whether TrainConfig accepts `method` with `options` (asks the engine's own validation)."""
    from workbench.config import TrainConfig

    try:
        TrainConfig(method=method, **options)
    except WorkbenchError:
        return False
    return True


def method_names() -> list[str]:
    from workbench.peft import method_names as names

    return names()


def method_description(name: str) -> str:
    from workbench.peft import METHODS

    return METHODS[name].description


def runs_frame() -> pd.DataFrame:
    """All runs, newest first, with a status label column for tables."""
    frame = manager().store.runs_frame()
    if not frame.empty:
        labels = frame["status"].map(status_label)  # a run from a bundle says so wherever runs are listed
        frame.insert(0, "state", labels.where(frame["imported"].isna(), labels + " · imported"))
    return frame
