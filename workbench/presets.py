"""Class presets: one base config in, a few controlled variations out.

Each preset answers one question of the course by changing exactly the settings that question is
about and nothing else (same data, split, seed, epochs and batch size), so the curves it produces
can be compared directly. Pure functions of a `TrainConfig`: the app's one-click buttons and the
notebooks call the same code.

    >>> from workbench.presets import presets
    >>> runs = presets()["LoRA vs full"](TrainConfig(model="mnist-cnn", data="digits"))
    >>> [r.name for r in runs]
    ['lora · mnist-cnn/digits · s0', 'full · mnist-cnn/digits · s0']

Every variation is tagged ``preset:<slug>`` and named after what it varies, plus the model, the data
and the seed (``<base name> · lora`` when the base config has a name), so the Compare page can filter
and label them, and runs of one preset on two datasets or seeds are told apart. The seed comes last
so the Compare page's seed bands group "… · s0", "… · s1" under one label.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from workbench.config import TrainConfig
from workbench.errors import WorkbenchError, received
from workbench.peft import get_method, method_with_role

Preset = Callable[[TrainConfig], list[TrainConfig]]

def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _variant(base: TrainConfig, preset: str, label: str, **changes: object) -> TrainConfig:
    """`base` with `changes`, named after `label` and tagged with the preset (validated again).

    Another method starts from its own default options (the base's belong to the base's method)."""
    tag = f"preset:{_slug(preset)}"
    tags = [*base.tags, tag] if tag not in base.tags else list(base.tags)
    name = f"{base.name} · {label}" if base.name else f"{label} · {base.subject()} · s{base.seed}"
    if changes.get("method", base.method) != base.method:
        changes.setdefault("method_options", {})
    return dataclasses.replace(base, name=name[:80], tags=tags, **changes)


def lora_vs_full(base: TrainConfig) -> list[TrainConfig]:
    """LoRA (the registry's default method) against full fine-tuning (its baseline): how close does ~1%
    of the parameters get?

    Each method runs with its own default learning rate (`lr=None`): full fine-tuning of a
    pretrained transformer needs a much smaller step than the few LoRA weights, and one shared LR
    would make the comparison unfair to one of them. Sharing is turned off for the full run.
    """
    title = "LoRA vs full"
    lora, full = method_with_role("default").name, method_with_role("baseline").name
    return [_variant(base, title, lora, method=lora, lr=None),
            _variant(base, title, full, method=full, share="off", lr=None)]


def bottom_up_vs_top_down(base: TrainConfig) -> list[TrainConfig]:
    """Hierarchical fine-tuning both ways: the source document's bottom-up against ULMFiT's top-down.

    Methods that cannot be staged (e.g. a linear probe, which only trains the head) become LoRA.
    A mode that changes nothing for the model and method (mnist-cnn under LoRA: only block_3 has LoRA
    weights, so bottom-up has one stage that trains everything from step 0) would be a hierarchical-off
    run under a staging name, and the comparison would be a lie: it is replaced by the run it really
    is, labelled "staging off", so the preset compares that baseline with the mode that stages. When
    neither mode stages anything the preset refuses with a `WorkbenchError`.
    """
    title = "bottom-up vs top-down"
    method = base.method if get_method(base.method).capabilities.stageable else method_with_role("default").name
    variants = [_variant(base, title, mode, method=method, hierarchical=mode) for mode in ("bottom-up", "top-down")]
    idle = _staging_no_effect(variants[0])
    staged = [v for v in variants if not idle.get(v.hierarchical)]
    if not staged:
        raise WorkbenchError(f"The preset has nothing to compare: {idle['top-down']}; pick method full, which "
                             f"trains every group. {received(model=base.model, method=method)}")
    if len(staged) == len(variants):
        return staged
    return [_variant(base, title, "staging off", method=method, hierarchical="off"), *staged]


# The TrainConfig fields that decide which layer groups have something to train (the method and its
# options): what `preview.staging_effects` needs. The data's fields are left out on purpose: the
# answer does not depend on the data, and staging_effects stands a registered dataset in for it.
_METHOD_FIELDS = ("method", "method_options", "share", "tie_layers")


def _staging_no_effect(config: TrainConfig) -> dict[str, str | None]:
    """Staging mode -> why it changes nothing for `config`'s model and method (None: it stages).

    The engine's own plan (`preview.staging_effects`, cached per model and method options, no weight
    initialised), so the preset stays cheap. A user's .keras model has no card to check here: both
    modes are kept, and the Train page's preview shows that model's real plan.
    """
    from workbench.models import MODELS

    if config.model not in MODELS:
        return {}
    from workbench.preview import staging_effects

    return staging_effects(config.model, **{k: getattr(config, k) for k in _METHOD_FIELDS})


def plateau_vs_constant(base: TrainConfig) -> list[TrainConfig]:
    """The source document's "lower the LR when the model stops improving" against a fixed LR."""
    title = "plateau vs constant LR"
    return [_variant(base, title, "plateau", lr_schedule="plateau"),
            _variant(base, title, "constant", lr_schedule="constant")]


FORGETTING = "Forgetting: full vs LoRA vs staged"
FORGETTING_LR_SCALE = 10.0  # × the baseline's default LR (1e-3 for the CNN): high enough to overwrite what was learned
FORGETTING_LABELS = 10  # training examples per class: few labels, so a high LR has little to hold on to
FORGETTING_SEEDS = (0, 1, 2)
FORGETTING_EPOCHS = 5  # with batch 16: 35 steps, time enough to overwrite (the study's forgetting suite, run for run)


def forgetting_variants(base: TrainConfig) -> list[tuple[str, dict]]:
    """(label, changes) of the forgetting scenario: the baseline, the default PEFT method, both stagings
    of the baseline and reduce-on-plateau, all at one high learning rate with few labels.

    One LR for every variant: the question is what each principle does at the *same* step size, and
    the retention probe (the source task) says how much of the pretrained model each one kept. The
    scenario fixes its own length (5 epochs of batch 16), so the preset on mnist-cnn/digits runs
    exactly the study's forgetting suite (`workbench study --suites forgetting`)."""
    full, lora = method_with_role("baseline").name, method_with_role("default").name
    lr = FORGETTING_LR_SCALE * get_method(full).default_lr(_modality(base))
    few = dict(lr=lr, limit_per_class=FORGETTING_LABELS, epochs=FORGETTING_EPOCHS, batch_size=16)
    return [(full, dict(method=full, share="off", **few)),
            (lora, dict(method=lora, **few)),
            (f"{full} bottom-up", dict(method=full, share="off", hierarchical="bottom-up", **few)),
            (f"{full} top-down", dict(method=full, share="off", hierarchical="top-down", **few)),
            (f"{full} plateau", dict(method=full, share="off", lr_schedule="plateau", **few))]


def _modality(config: TrainConfig) -> str | None:
    from workbench.models import MODELS, get_model_card

    return get_model_card(config.model).modality if config.model in MODELS else None


def forgetting(base: TrainConfig) -> list[TrainConfig]:
    """Few labels and a high LR, three seeds each: does LoRA or staging keep the source task that full
    fine-tuning overwrites? Compare folds the seeds into groups and says whether each gap is real; on
    mnist-cnn/digits the 15 runs take under 3 minutes on a 2-core CPU."""
    return [_variant(dataclasses.replace(base, seed=seed), FORGETTING, label, **changes)
            for label, changes in forgetting_variants(base) for seed in FORGETTING_SEEDS]


def presets() -> dict[str, Preset]:
    """Preset title -> function(base config) -> list of configs to run side by side."""
    return {
        "LoRA vs full": lora_vs_full,
        "bottom-up vs top-down": bottom_up_vs_top_down,
        "plateau vs constant LR": plateau_vs_constant,
        FORGETTING: forgetting,
    }


def preset_tag(title: str) -> str:
    """The tag every run of preset `title` carries (``preset:lora-vs-full``)."""
    return f"preset:{_slug(title)}"


__all__ = ["Preset", "bottom_up_vs_top_down", "lora_vs_full", "plateau_vs_constant", "preset_tag", "presets"]
