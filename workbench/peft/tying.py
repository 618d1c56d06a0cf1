"""ALBERT-style cross-layer tying (Lan et al., 2020): one transformer block's weights serve every layer.

The first principle at its strongest: instead of sharing a small module across layers (tied LoRA,
VeRA, tied adapters), the whole block is shared, so the encoder has one block's parameters however
deep it is, and every method then trains that one block (full, BitFit), or one LoRA pair / adapter
set inside it. The task model is re-wired from the backbone's own layers (`models.bert.encoder_graph`)
with the first pretrained block called at every depth; the other blocks leave the model.

What to expect: a pretrained BERT was not trained tied, so the tied model starts from a different
function than the pretrained one (block 1 repeated), and fine-tuning must recover what the dropped
blocks knew. ALBERT ties from pretraining on; here the option shows the trade, parameters against
accuracy, on the same data as every other run. Measured (sms-spam, 600 rows, full fine-tuning, 3 epochs,
seed 0, test accuracy): MiniLM-L6 22.6M → 13.7M trainable (its 11.7M embeddings stay), 0.978 → 0.967;
tiny-bert 743k → 544k, 0.933 → 0.878.
"""

from __future__ import annotations

from workbench.errors import ConfigError, received


def tie_blocks(task_model) -> None:
    """Re-wire a BERT task model so that `transformer_layer_0` runs at every depth (before the method applies)."""
    import keras

    from workbench.models.bert import MaskedMeanPooling, encoder_graph

    backbone = task_model.backbone
    if backbone is None or task_model.card.modality != "text" or "head_dropout" not in _names(task_model.model):
        raise ConfigError("tie_layers ties transformer blocks: use a transformer text model (tiny-bert or "
                          f"minilm-l6), or turn tie_layers off. {received(model=task_model.card.name)}")
    old = task_model.model
    inputs = {t.name: keras.Input(t.shape[1:], dtype=t.dtype, name=t.name) for t in old.inputs}
    block = backbone.get_layer("transformer_layer_0")
    tokens = backbone.get_layer("token_embedding")(inputs["token_ids"])
    x = encoder_graph(backbone, tokens, inputs["segment_ids"], inputs["padding_mask"],
                      blocks=[block] * backbone.num_layers)
    out = old.get_layer("head_dropout")(MaskedMeanPooling(name="mean_pooling")(x, inputs["padding_mask"]))
    for layer in task_model.groups["head"]:
        out = layer(out)
    task_model.model = keras.Model(inputs, out, name=f"{old.name}_tied")
    # The groups follow the model: the one block is block_1; the blocks that left it leave the groups.
    for i in range(2, backbone.num_layers + 1):
        task_model.groups.pop(f"block_{i}", None)
    task_model.groups["block_1"] = [block]


def _names(model) -> set[str]:
    return {layer.name for layer in model.layers}
