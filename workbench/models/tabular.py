"""mlp: a small multilayer perceptron for tabular data, trained from scratch.

There is no pretrained tabular model worth shipping; the MLP lets regression (MSE) and tabular data
go through the same engine, methods and charts as the pretrained text and image models.
"""

from __future__ import annotations

import keras
import numpy as np

from workbench.models.base import BuildContext, TaskModel, make_head


def build_mlp(card, ctx: BuildContext) -> TaskModel:
    features = int(ctx.x_train.shape[1])
    inputs = keras.Input((features,), name="features")
    # Standardise with training-split statistics only (fixed, not trained).
    norm = keras.layers.Normalization(name="standardize")
    norm.adapt(np.asarray(ctx.x_train, dtype="float32"))
    x = norm(inputs)
    x = keras.layers.Dense(64, activation="relu", name="dense_1")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense_2")(x)
    output, head_layers = make_head(x, ctx)
    model = keras.Model(inputs, output, name="mlp_task")
    groups = {"block_1": [model.get_layer("dense_1")], "block_2": [model.get_layer("dense_2")], "head": head_layers}
    return TaskModel(model=model, groups=groups, card=card, encode=lambda x: x.astype("float32"))
