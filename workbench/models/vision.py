"""mnist-cnn: a small CNN this project pretrained on MNIST-5k (`workbench pretrain mnist-cnn`).

The transfer demo fine-tunes it on scikit-learn's `digits` (another source: 8×8 scans upsampled to
28×28) with a few labels per class; the same architecture from scratch is the control. Measured here:
10 labels per class, 5 epochs, full fine-tuning: ~0.9 test accuracy pretrained vs ~0.7 from scratch.
"""

from __future__ import annotations

import keras
import numpy as np

from workbench.models.base import BuildContext, TaskModel, make_head
from workbench.paths import models_dir

IMAGE_SHAPE = (28, 28, 1)


def conv_backbone(input_shape: tuple, input_name: str, name: str, flat_dropout: float = 0.0) -> keras.Model:
    """A picture (an image, or speech's log-mel) → 64 features: two conv blocks and a dense layer.

    The shape the project's CNNs share (mnist-cnn, and spoken-digit-cnn with dropout before `features`).
    """
    inputs = keras.Input(input_shape, name=input_name)
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same", name="conv_1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool_1")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", padding="same", name="conv_2")(x)
    x = keras.layers.MaxPooling2D(name="pool_2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if flat_dropout:
        x = keras.layers.Dropout(flat_dropout, name="flat_dropout")(x)
    x = keras.layers.Dense(64, activation="relu", name="features")(x)
    return keras.Model(inputs, x, name=name)


def cnn_backbone() -> keras.Model:
    """28×28×1 image → 64 features (56k parameters)."""
    return conv_backbone(IMAGE_SHAPE, "image", "mnist_cnn")


def conv_task_model(backbone: keras.Model, card, ctx: BuildContext, name: str, **extra) -> TaskModel:
    """Backbone → dropout → new head, with the CNNs' layer groups (conv_1, conv_2, features, head)."""
    inputs = keras.Input(backbone.inputs[0].shape[1:], name=backbone.inputs[0].name)
    output, head_layers = make_head(backbone(inputs), ctx, dropout=0.2)
    model = keras.Model(inputs, output, name=name)
    groups = {"block_1": [backbone.get_layer("conv_1")], "block_2": [backbone.get_layer("conv_2")],
              "block_3": [backbone.get_layer("features")], "head": head_layers}
    return TaskModel(model=model, groups=groups, card=card, encode=lambda x: np.asarray(x, "float32"),
                     backbone=backbone, **extra)


def build_mnist_cnn(card, ctx: BuildContext) -> TaskModel:
    if ctx.from_scratch:
        backbone = cnn_backbone()
    else:
        backbone = keras.saving.load_model(models_dir() / "mnist-cnn.keras", safe_mode=True, compile=False)
    return conv_task_model(backbone, card, ctx, "mnist_cnn_task")
