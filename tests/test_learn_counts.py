"""The Learn page's LoRA arithmetic: the engine's counts, and a toy where LoRA saves parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import prepared

from pages import _learn_demos as demo
from workbench.config import TrainConfig
from workbench.models import build_task_model
from workbench.peft.lora import lora_param_count
from workbench.peft.lora_layers import matrix_shape
from workbench.preview import preview


def shapes_of(task_model) -> pd.DataFrame:
    """What `pages._engine_calls.lora_shapes` hands the Learn page: (layer, d_in, d_out, count)."""
    rows = [(layer.name, *matrix_shape(layer)) for layer in task_model.lora_target_layers(None)]
    frame = pd.DataFrame(rows, columns=["layer", "d_in", "d_out"])
    return frame.groupby(["layer", "d_in", "d_out"], sort=False).size().rename("count").reset_index()


@pytest.mark.parametrize("model, data", [("tiny-bert", "sms-spam"), ("mnist-cnn", "digits"), ("mlp", "diabetes")])
@pytest.mark.parametrize("rank", [2, 8])
def test_learn_counts_are_what_the_train_page_trains(model, data, rank):
    """Each sharing mode's count equals the engine's formula and the preview's trainable minus the head."""
    base = prepared(TrainConfig.from_dict(dict(model=model, data=data, method="lora", rank=rank, max_rows=200)))
    counts = demo.sharing_counts(shapes_of(base.task_model), rank)
    head = sum(int(np.prod(v.shape)) for v in base.task_model.head_variables())
    for name, share in (("LoRA", "off"), ("tied LoRA", "tied"), ("VeRA", "vera")):
        assert counts[name] == lora_param_count(base.task_model, rank, share=share), name
        pv = preview(TrainConfig.from_dict(dict(model=model, data=data, method="lora", rank=rank, share=share, max_rows=200)))
        assert counts[name] == pv.report.trainable - head, (name, counts[name], pv.report.trainable, head)


def test_toy_default_saves_parameters():
    """The toy opens at d = 32, r = 8: LoRA's 2·d·r = 512 numbers against the matrix's 1,024."""
    assert demo.toy_title(32, 8) == "512 trainable numbers make a 32×32 update: 50% of its 1024"
    assert "no saving" in demo.toy_title(12, 8)  # the old default: 192 numbers for a 144-number matrix
    b, a, delta = demo.lora_matrices(32, 8)
    assert demo.lora_figure(b, a, delta).layout.title.text == demo.toy_title(32, 8)


def test_build_is_not_needed_for_the_formula():
    """`lora_count` works from shapes alone: the same formula as a built model's count."""
    from workbench.peft.lora import lora_count
    from workbench.train.trainer import context, load_data

    config = TrainConfig(model="tiny-bert", data="sms-spam", max_rows=200)
    dataset, split = load_data(config)
    task_model = build_task_model("tiny-bert", context(dataset, split, config), "text")
    layers = [matrix_shape(layer) for layer in task_model.lora_target_layers(None)]
    assert lora_count(layers, 8, "tied") == 2 * 128 * 8 + len(layers) * 8
    assert lora_count(layers, 8, "tied") == lora_param_count(task_model, 8, share="tied")
