"""Train: data → model → method and principles → preview (parameters, LR schedule, stages) → start."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages import _train_form as form
from pages._engine_calls import preview
from pages._format import fmt_count
from pages._nav import use_app_navigation
from pages._plots import from_zero, plot
from pages._resources import manager
from pages._sweep_form import sweep_section
from pages._widgets import show_dataset_facts, show_dataset_sample
from workbench import charts
from workbench.config import TrainConfig
from workbench.data.checks import split_warnings
from workbench.errors import WorkbenchError
from workbench.presets import presets
from workbench.runs.estimate import estimate_duration
from workbench.schedules import discriminative_multipliers
from workbench.train.device import device_name
from workbench.train.stages import stage_length

use_app_navigation()

st.title("Train")
st.caption("Pick data and a pretrained model, choose how to fine-tune it, check what will train, start. "
           "Runs keep going in the background when you leave or close this tab.")
if "train_fork_note" in st.session_state:  # "Run again with changes" filled the form from a run
    st.info(st.session_state.pop("train_fork_note"), icon=":material/edit:")

left, right = st.columns(2, gap="large")
with left:
    st.subheader("1 · Data")
    picked = form.data_section()
if picked is None:
    st.stop()
data, csv_options, summary = picked
with left:
    show_dataset_facts(summary)
with right:
    st.subheader("2 · Model")
    model, card = form.model_section(summary["card"]["modality"])
show_dataset_sample(summary, key="train_data")
if not model:
    st.warning("No model fits this dataset's modality yet: upload a .keras model on the Data & Models page.")
    st.stop()

st.divider()
left, right = st.columns(2, gap="large")
with left:
    st.subheader("3 · Method and the three principles")
    method_options = form.method_section(card)
with right:
    st.subheader("4 · Training")
    train_options = form.training_section(summary)
    replicates = train_options.pop("replicates", 1)  # not a config field: how many seeds to start

st.divider()
st.subheader("5 · Before you launch")
values = {"model": model, "data": data, **csv_options, **method_options, **train_options}
try:
    config = TrainConfig(**values)
except WorkbenchError as exc:
    st.error(str(exc))
    st.stop()
key = {k: v for k, v in config.to_dict().items() if k not in ("name", "tags")}
try:
    pv = preview(key)
except WorkbenchError as exc:
    st.error(str(exc))
    st.stop()

cols = st.columns(6)
cols[0].metric("Trainable parameters", fmt_count(pv.report.trainable), help=f"{pv.report.trainable:,} exactly")
cols[1].metric("Total parameters", fmt_count(pv.report.total), help=f"{pv.report.total:,} exactly")
plain = getattr(pv, "plain_lora_trainable", None)
cols[2].metric("Trainable share", f"{pv.report.percent:.2f}%",
               f"−{fmt_count(plain - pv.report.trainable)} vs unshared" if plain else None, delta_color="off",
               delta_arrow="off", help=f"without sharing: {plain:,} trainable" if plain else None)
cols[3].metric("Training examples", f"{pv.split_sizes['train']:,}",
               help=f"validation {pv.split_sizes['val']:,} · test {pv.split_sizes['test']:,}")
cols[4].metric("Steps", f"{pv.total_steps:,}", help=f"{pv.steps_per_epoch:,} per epoch × {config.epochs} epochs")
cols[5].metric("Learning rate", f"{config.resolved_lr(pv.modality):g}",
               help="explicit" if config.lr is not None else "the method's default")

st.caption(f"Split (stratified, seed {config.seed}): {pv.split_sizes['train']:,} train · {pv.split_sizes['val']:,} "
           f"validation · {pv.split_sizes['test']:,} test · {pv.modality} {pv.task}"
           + (f" with {pv.num_classes} classes" if pv.num_classes else ""))
for warning in split_warnings(pv.split_sizes, pv.task, pv.num_classes):
    st.warning(warning)
left, right = st.columns(2, gap="large")
with left:
    bar = charts.params_bar(pv.report.trainable, pv.report.total, label=config.method)
    plot(bar.update_xaxes(title_text=None), "params")  # the bar's own annotation names the axis
    by_group = pv.report.by_group
    st.dataframe({"layer group": list(by_group), "trainable parameters": list(by_group.values())},
                 hide_index=True, height=min(300, 38 + 35 * len(by_group)),
                 column_config={"trainable parameters": st.column_config.NumberColumn(format="localized")})
with right:
    curves = {"lr": pv.lr_curve}
    if config.discriminative:
        mult = discriminative_multipliers(pv.group_names, config.discriminative)
        curves = {g: [lr * m for lr in pv.lr_curve] for g, m in mult.items()}
    plot(from_zero(charts.schedule_figure(curves, title=f"Learning-rate schedule: {config.lr_schedule}")),
         "lr-schedule")
    if config.lr_schedule == "plateau":
        st.caption(f"Plateau is flat until validation loss stops improving for {config.plateau_patience} "
                   f"epoch(s); then the LR is multiplied by {config.plateau_factor}. See the Learn page.")
if config.hierarchical != "off":
    plan = pv.stages  # the trainer's own plan: groups with nothing to train are no stage
    try:
        length = stage_length(config, len(plan), pv.steps_per_epoch, pv.total_steps)
    except WorkbenchError as exc:
        st.error(str(exc))
        st.stop()
    left, right = st.columns([3, 2], gap="large", vertical_alignment="center")
    with left:
        diagram = charts.stage_diagram(pv.group_names, config.hierarchical, stages=plan, skipped=pv.untrained_groups)
        plot(diagram.update_xaxes(title_text=None), "stages")
    with right:
        if pv.staging_no_effect:
            st.info(pv.staging_no_effect[0].upper() + pv.staging_no_effect[1:] + ".")
        stages_word = "stage" if len(plan) == 1 else "stages"
        st.markdown(f"**{len(plan)} {stages_word} of {length:,} steps** ({length / pv.steps_per_epoch:.2g} epochs)")
        for i, groups in enumerate(plan):
            end = pv.total_steps if i == len(plan) - 1 else (i + 1) * length
            st.markdown(f"{i + 1}. steps {i * length + 1:,}–{end:,}: " + ", ".join(f"`{g}`" for g in groups))
        if pv.untrained_groups:
            st.caption(f"Nothing trains in {', '.join(f'`{g}`' for g in pv.untrained_groups)} under "
                       f"{config.method}, so {'it is' if len(pv.untrained_groups) == 1 else 'they are'} no stage.")
        st.caption(f"Unfreezing a group turns on its {config.method} parameters; groups trained earlier keep "
                   "their optimizer state.")

st.divider()
estimate = estimate_duration(config, pv.total_steps, manager().store, device=device_name(), modality=pv.modality)
st.markdown("**Estimated duration:** " + (estimate.describe() if estimate else
            f"no estimate yet: the first {config.method} run of {Path(config.model).stem} on this machine "
            "calibrates it."))
if manager().queue_note():
    st.info(manager().queue_note())
st.caption(f"Runs train on {manager().describe()}.")
if manager().unavailable:
    st.error(f"No run can start now: {manager().unavailable}.")
name_col, start_col, preset_col, preset_start = st.columns([3, 1.2, 2.2, 1.6], vertical_alignment="bottom")
name = name_col.text_input("Run name (optional)", placeholder=config.display_name(), max_chars=80,
                           key="train_name")
seeds = list(range(config.seed, config.seed + replicates))
if start_col.button("Start run" if replicates == 1 else f"Start {replicates} runs", type="primary",
                    width="stretch", key="train_start"):
    try:
        ids = manager().start_group(TrainConfig(**{**values, "name": name.strip() or None}), seeds)
    except WorkbenchError as exc:
        st.error(str(exc))
    else:
        if len(ids) == 1:
            st.session_state["selected_run"] = ids[0]
            st.switch_page("pages/runs.py", query_params={"run": ids[0]})
        st.switch_page("pages/compare.py", query_params={"runs": ",".join(ids)})  # replicates: one group

all_presets = presets()
preset = preset_col.selectbox("Class preset", list(all_presets), key="train_preset",
                              help="Varies only what the question is about; everything else is the form above")
variants = []
try:
    variants = all_presets[preset](TrainConfig(**{**values, "name": name.strip() or None}))
except WorkbenchError as exc:
    st.error(str(exc))
# Replicates multiply a preset's variants, unless the preset already sets its own seeds.
preset_seeds = seeds if len({v.seed for v in variants}) <= 1 else None
count = len(variants) * (len(preset_seeds) if preset_seeds else 1)
if preset_start.button(f"Start {count} runs", width="stretch", key="train_preset_start", disabled=not variants):
    try:
        ids = [i for v in variants for i in (manager().start_group(v, preset_seeds) if preset_seeds
                                             else [manager().start(v)])]
    except WorkbenchError as exc:
        st.error(str(exc))
    else:
        st.switch_page("pages/compare.py", query_params={"runs": ",".join(ids)})
if variants:
    times = f" × {replicates} seeds each" if preset_seeds and replicates > 1 else (
        " (the preset sets its own seeds; Replicates does not apply)" if not preset_seeds and replicates > 1 else "")
    st.caption(f"“{preset}” starts: " + " · ".join(f"**{v.name}**" for v in variants)
               + f"{times} — then opens Compare with them.")

with st.expander("Sweep: search over settings", icon=":material/tune:"):
    sweep_section(config, pv.task)  # grid or random search from this form, as one group of runs
