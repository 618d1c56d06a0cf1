"""What every model in the workbench is: a card, and a task model with ordered layer groups.

A *task model* is a pretrained backbone plus a new head for the chosen dataset. Its *layer groups*
(embeddings, block_1 … block_N, head: bottom to top) are the unit that hierarchical fine-tuning
unfreezes and discriminative learning rates scale, so every builder must name them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

# Keras initializers without an explicit seed draw one from Python's process-wide `random`, so two
# threads building models at once would change each other's initial weights. Everything that
# creates weights takes this lock itself (`build_task_model`, `apply_method`, and `trainer.prepare`
# across seed → build → method), so a caller cannot forget it: same seed + config = same weights.
BUILD_LOCK = threading.RLock()


@dataclass(frozen=True)
class ModelCard:
    """What a user needs to choose a model: size, provenance, task, license, groups."""

    name: str
    title: str
    modality: str  # text | image | tabular
    architecture: str
    params: int  # backbone parameters (without the task head)
    pretrained: bool
    source: str  # where the weights come from
    source_task: str  # what they were trained on
    source_metric: str  # how well, on that task
    license: str
    description: str
    layer_groups: tuple[str, ...]
    lora_targets: tuple[str, ...]
    file: str | None = None
    reproduce: str | None = None
    input_spec: dict[str, Any] = field(default_factory=dict)
    source_probe: str = ""  # how forgetting of the source task is measured (`source_probes.probe_text`)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["layer_groups"] = list(self.layer_groups)
        data["lora_targets"] = list(self.lora_targets)
        return data


@dataclass
class BuildContext:
    """What a builder may look at: the task's shape and the training split (never val/test)."""

    task: str  # classification | regression
    num_classes: int | None
    x_train: np.ndarray
    y_train: np.ndarray
    max_seq_len: int = 64
    from_scratch: bool = False
    class_names: tuple[str, ...] | None = None  # the dataset's (a head may start from a source head's classes)

    @property
    def output_units(self) -> int:
        return int(self.num_classes) if self.task == "classification" else 1


@dataclass
class PrefixGraph:
    """Where a layered task model can be cut below what trains (`train.prefix_cache` says why).

    `lower(c)`: task inputs → the per-position states after the `c` lowest of `groups`;
    `upper(c)`: {"hidden": those states, "padding_mask"} → the task output. Both are built from the
    task model's own layer objects; `for_model` is the model they describe (a method that rewires
    the task model, prompt tuning or ALBERT tying, leaves a graph that no longer matches it).
    """

    groups: list[str]  # the groups a cut can leave below it, bottom to top (every group but the head)
    lower: Callable[[int], keras.Model]
    upper: Callable[[int], keras.Model]
    width: int  # state width per position
    for_model: keras.Model
    min_cut: int = 1  # the fewest groups worth caching (below it the model trains whole)


@dataclass
class TaskModel:
    """A Keras model from inputs to logits (or a regression value) and its ordered layer groups."""

    model: keras.Model
    groups: dict[str, list[keras.layers.Layer]]
    card: ModelCard
    encode: Callable[[np.ndarray], Any]  # dataset x (texts, images, features) -> model inputs
    from_logits: bool = True
    never_trainable: list = field(default_factory=list)  # variables no method may train (unused pooler)
    method: str | None = None
    backbone: keras.Model | None = None  # the pretrained part (prompt tuning, the source-task probe)
    notes: list[str] = field(default_factory=list)  # what the builder changed in the request (a clamp...)
    prefix: PrefixGraph | None = None  # where the frozen-prefix cache may cut it (layered text models)
    baseline: Callable[[Any], dict] | None = None  # the pretrained model's own test scores (speech: before adaptation)

    def __post_init__(self) -> None:
        # Weights Keras itself trains; statistics (Normalization, BatchNorm moving averages) never train.
        self.weight_ids = {id(v) for v in self.model.trainable_variables}

    @property
    def group_names(self) -> list[str]:
        return list(self.groups)

    def group_variables(self) -> dict[str, list]:
        """Each group's variables, including LoRA/adapter weights added to its layers later."""
        out: dict[str, list] = {}
        for name, layers in self.groups.items():
            seen: dict[int, Any] = {}
            for layer in layers:
                for variable in layer.variables:
                    seen.setdefault(id(variable), variable)
            out[name] = list(seen.values())
        return out

    def head_variables(self) -> list:
        return self.trainable_weights_of(self.group_variables()["head"])

    def trainable_weights_of(self, variables: list) -> list:
        """Keep the variables a method may train: original weights and weights added since (LoRA, adapters)."""
        from workbench.peft import variable_prefixes  # each method declares the prefix of what it adds

        prefixes = variable_prefixes()
        return [v for v in variables if id(v) in self.weight_ids or v.path.split("/")[-1].startswith(prefixes)]

    def all_layers(self) -> list[keras.layers.Layer]:
        return list(self.model._flatten_layers(include_self=False, recursive=True))

    def lora_target_layers(self, names: list[str] | tuple[str, ...] | None,
                           top_blocks: int | None = None) -> list[keras.layers.Layer]:
        """Dense/EinsumDense/Conv layers named in `names` (default: the card's targets), head excluded;
        with `top_blocks`, only those inside the top N `block_*` groups (peft's `layers_to_transform`)."""
        wanted = set(names or self.card.lora_targets)
        head = {id(layer) for layer in self.groups["head"]}
        inside = self.block_layer_ids(top_blocks) if top_blocks else None
        return [layer for layer in self.all_layers()
                if layer.name in wanted and hasattr(layer, "enable_lora") and id(layer) not in head
                and (inside is None or id(layer) in inside)]

    def block_layer_ids(self, top: int) -> set[int]:
        """Ids of every layer (nested ones too) in the top `top` block groups; ConfigError if there are fewer."""
        from workbench.errors import ConfigError, received

        blocks = [g for g in self.groups if g.startswith("block_")]
        if top > len(blocks):
            raise ConfigError(f"{self.card.name} has {len(blocks)} blocks, so it cannot adapt the top {top}: use "
                              f"top_blocks {len(blocks)} or less. {received(top_blocks=top)}")
        return {id(sub) for g in blocks[len(blocks) - top:] for layer in self.groups[g]
                for sub in layer._flatten_layers(include_self=True, recursive=True)}


def make_head(features, ctx: BuildContext, *, dropout: float = 0.0):
    """The new task head: Dense logits, or a Dense output rescaled to the target's units.

    Regression targets (a diabetes score of 25–346) are learned in standardised units and rescaled
    by a fixed layer, so the reported MSE is in the data's own units while optimisation stays sane.
    The head is float32 under any mixed-precision policy: a float16 softmax/cross-entropy loses
    precision (the Keras mixed-precision guide keeps the output layer in float32).
    Returns (output tensor, [head layers]).
    """
    x = keras.layers.Dropout(dropout, name="head_dropout")(features) if dropout else features
    dense = keras.layers.Dense(ctx.output_units, name="head", dtype="float32")
    out = dense(x)
    layers = [dense]
    if ctx.task == "regression":
        y = np.asarray(ctx.y_train, dtype="float64")
        scale = keras.layers.Rescaling(scale=float(y.std() or 1.0), offset=float(y.mean()), name="head_scale",
                                         dtype="float32")
        out = scale(out)
        layers.append(scale)
    return out, layers


def producer(tensor) -> tuple[Any, Any]:
    """(layer, node) that made a symbolic tensor in its functional graph; (None, None) for a model input.

    Shared by the feature cache (where to cut a task model at its head) and the source probes (which
    layers of a backbone form a chain)."""
    history = getattr(tensor, "_keras_history", None)
    if history is None or not isinstance(tensor, keras.KerasTensor):
        return None, None
    layer = history.operation
    nodes = getattr(layer, "_inbound_nodes", [])
    if isinstance(layer, keras.layers.InputLayer) or history.node_index >= len(nodes):
        return None, None
    return layer, nodes[history.node_index]
