"""Run notes: a plateau that never fired and a staging that changed nothing are said, with the reason."""

from __future__ import annotations

import pandas as pd
import pytest

from workbench.run_notes import plateau_fired, plateau_note, staging_note

PLATEAU = {"lr_schedule": "plateau", "plateau_patience": 1, "min_lr": 1e-6, "method": "full"}


def frame(lrs: list[float], val: list[float], steps_per_epoch: int = 4, run_id: str = "r1") -> pd.DataFrame:
    """A run's rows as the trainer records them: `train/lr` every step, `val/loss` at each epoch end."""
    rows = [(run_id, s, s // steps_per_epoch, "train/lr", lr) for s, lr in enumerate(lrs, start=1)]
    rows += [(run_id, (e + 1) * steps_per_epoch, e, "val/loss", v) for e, v in enumerate(val)]
    return pd.DataFrame(rows, columns=["run_id", "step", "epoch", "key", "value"]).assign(wall=0.0)


def test_plateau_fired_reads_the_recorded_lr():
    assert plateau_fired(frame([1e-3] * 8 + [5e-4] * 4, [1.0, 1.1, 1.2]), "r1") is True
    assert plateau_fired(frame([1e-3] * 12, [1.0, 0.9, 0.8]), "r1") is False
    assert plateau_fired(frame([1e-3] * 12, [1.0]), "other") is None  # no rows of that run
    assert plateau_fired(pd.DataFrame(columns=["run_id", "step", "epoch", "key", "value"]), "r1") is None
    # float32 round-trips of one LR are not a cut
    assert plateau_fired(frame([1e-3, 1e-3 * (1 - 1e-8), 1e-3], [1.0]), "r1") is False


def test_plateau_note_says_why_it_never_fired():
    improving = plateau_note(PLATEAU, frame([1e-3] * 12, [1.0, 0.9, 0.8]))
    assert improving.startswith("plateau never fired: validation loss kept improving") and "0.001" in improving
    late = plateau_note(PLATEAU, frame([1e-3] * 12, [1.0, 0.9, 0.95]))
    assert "stalled only at the last epoch" in late
    short = plateau_note({**PLATEAU, "plateau_patience": 2}, frame([1e-3] * 12, [1.0, 1.1, 1.2]))
    assert "3 epochs are too few for a patience of 2" in short
    stalls = plateau_note({**PLATEAU, "plateau_patience": 3},
                          frame([1e-3] * 28, [1.0, 1.1, 0.9, 1.0, 0.8, 0.85, 0.7]))
    assert "never stalled for 3 epochs in a row" in stalls and "at most 1" in stalls
    assert "before its first validation" in plateau_note(PLATEAU, frame([1e-3] * 3, []))


def test_plateau_note_when_it_fired_and_for_other_schedules():
    fired = plateau_note(PLATEAU, frame([1e-3] * 8 + [5e-4] * 4, [1.0, 1.1, 1.2]))
    assert fired == "plateau fired 1 time (at step 9): the LR went from 0.001 to 0.0005"
    assert plateau_note({**PLATEAU, "lr_schedule": "constant"}, frame([1e-3] * 4, [1.0])) is None
    assert plateau_note(PLATEAU, pd.DataFrame()) is None
    with pytest.raises(ValueError, match="one run_id"):
        plateau_note(PLATEAU, pd.concat([frame([1e-3], [1.0]), frame([1e-3], [1.0], run_id="r2")]))


def trainable_rows(changes: dict[int, dict[str, float]]) -> pd.DataFrame:
    rows = [("r1", step, 0, f"trainable/{g}", v) for step, groups in changes.items() for g, v in groups.items()]
    return pd.DataFrame(rows, columns=["run_id", "step", "epoch", "key", "value"]).assign(wall=0.0)


def test_staging_note_says_when_staging_changed_nothing():
    config = {"hierarchical": "bottom-up", "method": "lora"}
    one = trainable_rows({0: {"block_3": 1.0, "head": 1.0}})
    note = staging_note(config, one, groups=["block_1", "block_2", "block_3", "head"])
    assert note.startswith("bottom-up changed nothing: only block_3 has LoRA weights to train")
    assert "block_1, block_2 have nothing to train under lora" in note
    probe = staging_note({"hierarchical": "top-down", "method": "bitfit"}, trainable_rows({0: {"head": 1.0}}))
    assert "nothing below the head trains under bitfit" in probe


def test_staging_note_counts_real_stages_and_names_untrained_groups():
    config = {"hierarchical": "bottom-up", "method": "lora"}
    two = trainable_rows({0: {"block_1": 1.0, "block_2": 0.0, "head": 1.0}, 5: {"block_2": 1.0}})
    note = staging_note(config, two, groups=["embeddings", "block_1", "block_2", "head"])
    assert note == "2 stages (starting at steps 0, 5); embeddings has nothing to train under lora, so no stage"
    assert staging_note({**config, "hierarchical": "off"}, two) is None
    assert staging_note(config, trainable_rows({})) is None
