"""The "bottom-up vs top-down" preset never starts a staged run that changes nothing.

A staging mode with one stage trains every group from step 0, exactly like hierarchical off
(mnist-cnn under LoRA or adapters: only block_3 has weights of the method). Such a run under a
staging name would make the comparison a lie, so the preset replaces it with the baseline it is.
The oracle here is each returned config's own preview (real data, the trainer's plan), not the
cached model-only check the preset itself uses.
"""

from __future__ import annotations

import dataclasses

import pytest

from workbench.config import TrainConfig
from workbench.errors import WorkbenchError
from workbench.presets import bottom_up_vs_top_down, preset_tag
from workbench.preview import preview

DATA = {"mnist-cnn": "digits", "mlp": "diabetes", "tiny-bert": "sms-spam"}


def small(model: str, **options) -> TrainConfig:
    return TrainConfig.from_dict(dict(model=model, data=DATA[model], max_rows=60, batch_size=8, epochs=2, seed=4, **options))


@pytest.mark.parametrize("model, options", [
    ("mnist-cnn", {"method": "full"}), ("mnist-cnn", {"method": "lora"}), ("mnist-cnn", {"method": "adapter"}),
    ("mnist-cnn", {"method": "linear"}), ("mlp", {"method": "adapter"}), ("mlp", {"method": "lora"}),
    ("mlp", {"method": "lora", "lora_targets": ["dense_2"]}), ("tiny-bert", {"method": "lora"}),
    ("tiny-bert", {"method": "lora", "tie_layers": True})])
def test_every_staged_variant_changes_something(model, options):
    base = small(model, **options)
    runs = bottom_up_vs_top_down(base)
    modes = [r.hierarchical for r in runs]
    staged = [r for r in runs if r.hierarchical != "off"]
    assert staged and len(runs) == 2 and len(set(modes)) == 2, modes
    for run in staged:
        assert preview(run).staging_no_effect is None, (run.name, preview(run).stages)
    for run in runs:  # the mode that would change nothing is the baseline, named for what it is
        label = "staging off" if run.hierarchical == "off" else run.hierarchical
        assert run.name == f"{label} · {base.subject()} · s4"
        assert preset_tag("bottom-up vs top-down") in run.tags
        assert dataclasses.replace(run, name=None, tags=[], hierarchical="off") == dataclasses.replace(
            base, name=None, tags=[], method=run.method)  # only the staging (and a probe's method) vary
    idle = {mode for mode in ("bottom-up", "top-down") if preview(dataclasses.replace(base, method=runs[0].method,
                                                                                       hierarchical=mode)).staging_no_effect}
    assert ("off" in modes) == bool(idle) and not idle & set(modes)


def test_known_cases():
    """mnist-cnn: LoRA sits in block_3 only (bottom-up == off); full trains every block (both stage)."""
    assert [r.hierarchical for r in bottom_up_vs_top_down(small("mnist-cnn", method="lora"))] == ["off", "top-down"]
    assert [r.hierarchical for r in bottom_up_vs_top_down(small("mnist-cnn", method="full"))] == [
        "bottom-up", "top-down"]
    named = bottom_up_vs_top_down(dataclasses.replace(small("mnist-cnn", method="lora"), name="class"))
    assert [r.name for r in named] == ["class · staging off", "class · top-down"]


def test_nothing_to_compare_is_a_one_line_error(monkeypatch):
    """Neither mode stages (nothing below the head trains): no runs, a reason and a fix."""
    import workbench.preview

    reason = "top-down changes nothing here: nothing below the head trains under lora"
    monkeypatch.setattr(workbench.preview, "staging_effects",
                        lambda model, **options: {"bottom-up": reason.replace("top-down", "bottom-up"),
                                                  "top-down": reason})
    with pytest.raises(WorkbenchError) as info:
        bottom_up_vs_top_down(small("mnist-cnn", method="lora"))
    message = str(info.value)
    assert "nothing to compare" in message and reason in message and "pick method full" in message
    assert "\n" not in message and message.endswith("Received: model='mnist-cnn', method='lora'")


def test_a_user_model_file_keeps_both_modes_without_building_anything(monkeypatch):
    """No card to check a .keras file against cheaply: both modes run, and its preview shows the plan."""
    import workbench.preview

    def refuse(*args, **kwargs):
        raise AssertionError("a user's model must not be checked through the registry")

    monkeypatch.setattr(workbench.preview, "staging_effects", refuse)
    runs = bottom_up_vs_top_down(TrainConfig(model="uploads/ab/models/mine.keras", data="digits", method="lora"))
    assert [r.hierarchical for r in runs] == ["bottom-up", "top-down"]
