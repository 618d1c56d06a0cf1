"""The real pretrained model: loads offline, embeds meaning, and a short LoRA fine-tune helps."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import prepared, train_here

from workbench.config import TrainConfig


def test_minilm_loads_offline_and_embeds_similar_sentences_closer(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from workbench.models.bert import MINILM_PARAMS, encode_texts, load_minilm_backbone, minilm_tokenizer

    backbone = load_minilm_backbone()
    assert backbone.count_params() == MINILM_PARAMS
    texts = np.array(["A man is playing a guitar.", "Someone plays the guitar.", "Stock markets fell sharply today."])
    inputs = encode_texts(minilm_tokenizer(), texts, 32, "minilm-test")
    states = keras.ops.convert_to_numpy(backbone(inputs)["sequence_output"])
    mask = inputs["padding_mask"][..., None].astype("float32")
    emb = (states * mask).sum(1) / mask.sum(1)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3


@pytest.mark.slow
def test_short_lora_fine_tune_improves_validation_loss(store):
    config = TrainConfig(model="minilm-l6", data="sms-spam", method="lora", epochs=1, batch_size=32,
                         max_rows=480, max_seq_len=32, lr=2e-3, export_model=False)
    prep = prepared(config)
    assert prep.report.percent < 2.0
    model = prep.task_model.model
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.evaluate(prep.inputs["val"], prep.split.y_val.astype("int32"), verbose=0)
    _, summary = train_here(prep, store)
    assert summary["val_loss"] < before * 0.8, (before, summary["val_loss"])
