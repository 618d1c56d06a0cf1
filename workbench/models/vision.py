"""mnist-cnn: a small CNN this project pretrained on MNIST-5k (`workbench pretrain mnist-cnn`).

The transfer demo fine-tunes it on scikit-learn's `digits` (another source: 8×8 scans upsampled to
28×28) with a few labels per class; the same architecture from scratch is the control. Measured here:
10 labels per class, 5 epochs, full fine-tuning: ~0.9 test accuracy pretrained vs ~0.7 from scratch.
"""

from __future__ import annotations

import keras

from workbench.models.base import BuildContext, TaskModel, make_head
from workbench.paths import models_dir

IMAGE_SHAPE = (28, 28, 1)


def cnn_backbone() -> keras.Model:
    """28×28×1 image → 64 features: two conv blocks and a dense layer (56k parameters)."""
    inputs = keras.Input(IMAGE_SHAPE, name="image")
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same", name="conv_1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool_1")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", padding="same", name="conv_2")(x)
    x = keras.layers.MaxPooling2D(name="pool_2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="features")(x)
    return keras.Model(inputs, x, name="mnist_cnn")


def build_mnist_cnn(card, ctx: BuildContext) -> TaskModel:
    if ctx.from_scratch:
        backbone = cnn_backbone()
    else:
        backbone = keras.saving.load_model(models_dir() / "mnist-cnn.keras", safe_mode=True, compile=False)
    inputs = keras.Input(IMAGE_SHAPE, name="image")
    output, head_layers = make_head(backbone(inputs), ctx, dropout=0.2)
    model = keras.Model(inputs, output, name="mnist_cnn_task")
    groups = {"block_1": [backbone.get_layer("conv_1")], "block_2": [backbone.get_layer("conv_2")],
              "block_3": [backbone.get_layer("features")], "head": head_layers}
    return TaskModel(model=model, groups=groups, card=card, encode=lambda x: x.astype("float32"), backbone=backbone)
