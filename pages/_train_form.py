"""The Train page's form sections. Each returns plain TrainConfig fields; the page assembles them.

Widget values persist for the browser session (`persist_state="session"`), so a user who starts a
run, watches it on the Runs page and comes back finds the form as they left it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from pages import _widgets as w
from pages._engine_calls import method_description, method_names, supports
from pages._method_form import method_options
from pages._uploads import uploaded_files
from workbench.config import HIERARCHICAL_MODES, OPTIMIZERS, PRECISIONS, STRATEGIES, default_lr
from workbench.errors import WorkbenchError
from workbench.schedules import SCHEDULE_HELP, SCHEDULE_NAMES

KEEP = {"persist_state": "session"}
LR_CHOICES = [1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1]


def _select(label: str, options: list[Any], key: str, default: Any = None, **kwargs: Any) -> Any:
    """A selectbox that survives changing options and remembers its value for the session."""
    w.keep_valid(key, options)
    index = options.index(default) if default in options else 0
    return st.selectbox(label, options, index=index, key=key, **KEEP, **kwargs)


# -- 1. data ------------------------------------------------------------------------------------
def data_section() -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """Built-in dataset or CSV. Returns (data, csv options, dataset summary) or None when incomplete."""
    from workbench import data as wdata

    source = st.segmented_control("Source", ["built-in", "CSV file", "My recordings"], default="built-in",
                                  key="train_source", required=True, **KEEP)
    if source == "My recordings":
        from pages._recordings import fingerprint, personal_datasets

        folders = {p.name: p for p in personal_datasets()}
        if not folders:
            st.info("No recordings yet: record some digits on the Data & Models page (tab “Your voice”).")
            return None
        folder = folders[_select("Recordings", list(folders), "train_recordings")]
        try:
            return str(folder), {}, w.dataset_summary(str(folder), version=fingerprint(folder))
        except WorkbenchError as exc:
            st.error(str(exc))
            return None
    if source == "CSV file":
        picked = w.csv_mapper("train_csv")
        if picked is None:
            st.info("Upload a CSV with a header row, then map its input and label columns.")
            return None
        path, options = picked
        return path, options, w.dataset_summary(path, w.csv_key(options))
    try:
        cards = {c.name: c for c in wdata.list_datasets()}
    except WorkbenchError as exc:
        st.error(str(exc))
        return None
    name = _select("Dataset", list(cards), "train_data", default="sms-spam",
                   format_func=lambda n: f"{cards[n].title}  ·  {n}")
    try:
        summary = w.dataset_summary(name)
    except Exception as exc:  # noqa: BLE001 - a broken sample file must not take the page down
        st.error(str(exc))
        return None
    return name, {}, summary


# -- 2. model -----------------------------------------------------------------------------------
def model_section(modality: str) -> tuple[str, Any]:
    """Registered models whose modality fits the data, plus uploaded .keras models (image/tabular)."""
    from workbench.models import list_models

    cards = {c.name: c for c in list_models() if c.modality == modality}
    files = [str(p) for p in uploaded_files("models")] if modality != "text" else []
    options = [*cards, *files]
    sized = [c for c in cards.values() if c.params]
    default = min(sized, key=lambda c: c.params).name if sized else (options[0] if options else None)
    # One widget per modality: its options differ, and a model chosen for text is remembered for text.
    model = _select("Model", options, f"train_model_{modality}", default=default,
                    format_func=lambda n: f"{cards[n].title}  ·  {n}" if n in cards else f"your model · {Path(n).name}")
    if model in cards:
        w.show_model(cards[model])
    elif model:
        st.caption("Your uploaded model: loaded in safe mode; its input and output must fit this dataset "
                   "(checked below). Every weighted layer is a layer group, the last one the head.")
    return model, cards.get(model)


# -- 3. method and the three principles ---------------------------------------------------------
def method_section(card: Any) -> dict[str, Any]:
    from workbench.peft import method_with_role, methods, share_modes

    names = method_names()
    method = _select("PEFT method", names, "train_method", default=method_with_role("default").name)
    st.caption(method_description(method))
    out: dict[str, Any] = {"method": method, "method_options": method_options(method, card, KEEP)}

    st.markdown("**Principle 1 · Parameter sharing**")
    shares = [s for s in share_modes() if supports(method, share=s)]
    if len(shares) > 1:
        out["share"] = st.segmented_control(
            "Sharing across layers", shares, default="off", key="train_share", required=True, **KEEP,
            help="tied: one LoRA pair for all layers · vera: shared frozen random bases, tiny per-layer scales")
    else:
        sharing = ", ".join(m.name for m in methods() if m.capabilities.share_modes)
        st.caption(f"{method} has no sharing mode (methods that share across layers: {sharing}).")
    if card is not None and card.architecture.startswith("BERT") and supports(method, tie_layers=True):
        out["tie_layers"] = st.toggle(
            "Tie the transformer blocks (ALBERT-style)", False, key="train_tie", **KEEP,
            help="one block's weights at every depth: the encoder keeps one block's parameters (the first "
                 "pretrained block, repeated; the others leave the model)")

    st.markdown("**Principle 2 · Hierarchical fine-tuning**")
    modes = [h for h in HIERARCHICAL_MODES if supports(method, hierarchical=h)]
    useless = _staging_no_effect(card, out) if len(modes) > 1 else {}
    modes = [h for h in modes if not useless.get(h)]
    not_offered = " ".join(f"Not offered: {why}." for why in useless.values() if why)  # would change nothing
    if len(modes) > 1:
        w.keep_valid("train_hier", modes)
        mode = st.segmented_control("Unfreezing order", modes, default="off", key="train_hier", required=True,
                                    **KEEP)
        st.caption(f"{HIERARCHICAL_MODES[mode]}. {not_offered}" if not_offered else HIERARCHICAL_MODES[mode])
        out["hierarchical"] = mode
        if mode != "off":
            a, b = st.columns(2)
            unit = a.segmented_control("Stage length", ["auto", "epochs", "steps"], default="auto",
                                       key="train_stage_unit", required=True, **KEEP)
            if unit == "epochs":
                out["stage_epochs"] = b.number_input("Epochs per stage", 0.25, 50.0, 1.0, 0.25,
                                                     key="train_stage_epochs", **KEEP)
            elif unit == "steps":
                out["stage_steps"] = int(b.number_input("Steps per stage", 1, 100_000, 50, key="train_stage_steps",
                                                        **KEEP))
    else:
        st.caption(not_offered or f"Staged unfreezing needs trainable layer groups below the head; {method} has none.")

    st.markdown("**Principle 3 · Learning-rate adaptation**")
    schedule = _select("LR schedule", list(SCHEDULE_NAMES), "train_schedule", default="constant")
    st.caption(SCHEDULE_HELP.get(schedule, ""))
    out["lr_schedule"] = schedule
    if schedule == "warmup-cosine":
        out["warmup_frac"] = st.slider("Warmup fraction", 0.0, 0.5, 0.1, 0.01, key="train_warmup", **KEEP)
    if schedule == "plateau":
        a, b = st.columns(2)
        out["plateau_factor"] = a.select_slider("Cut factor", [0.1, 0.2, 0.3, 0.5, 0.7, 0.9], value=0.5,
                                                key="train_pl_factor", **KEEP)
        out["plateau_patience"] = int(b.number_input("Patience (epochs)", 1, 20, 1, key="train_pl_patience",
                                                     **KEEP))
    a, b = st.columns(2)
    if supports(method, discriminative=2.6) and a.toggle(
            "Discriminative LR", False, key="train_disc_on", **KEEP,
            help="ULMFiT: each layer group below the top learns `factor` times slower"):
        out["discriminative"] = a.slider("Factor per group", 1.0, 4.0, 2.6, 0.1, key="train_disc", **KEEP)
    if not b.toggle("Method's default LR", True, key="train_lr_default", **KEEP,
                    help=f"{method}'s default: {default_lr(method, getattr(card, 'modality', None)):g}"):
        out["lr"] = b.select_slider("Learning rate α", LR_CHOICES, value=1e-3, format_func=lambda v: f"{v:g}",
                                    key="train_lr", **KEEP)
    return out


def _staging_no_effect(card: Any, options: dict[str, Any]) -> dict[str, str | None]:
    """Staging mode → why it would change nothing for this model and method (the engine's own plan).

    A user's .keras model (no card) is not checked here: the preview's plan says it below instead.
    """
    if card is None:
        return {}
    from workbench.preview import staging_effects

    try:
        return staging_effects(card.name, **options)
    except Exception:  # noqa: BLE001 - advisory only: the preview below reports what is wrong with these options
        return {}


# -- 4. training --------------------------------------------------------------------------------
def training_section(summary: dict[str, Any]) -> dict[str, Any]:
    """TrainConfig fields, plus `replicates` (how many seeds to run, from `seed` on): not a config field,
    the page pops it and starts that many runs as one seed group."""
    card = summary["card"]
    modality, task = card["modality"], card["task"]
    a, b, c, d = st.columns([1, 1.3, 1, 1])
    out: dict[str, Any] = {
        "epochs": int(a.number_input("Epochs", 1, 200, 3, key="train_epochs", **KEEP)),
        "batch_size": int(b.select_slider("Batch size", [4, 8, 16, 32, 64, 128, 256], value=32,
                                          key="train_batch", **KEEP)),
        "seed": int(c.number_input("Seed", 0, 1_000_000, 0, key="train_seed", **KEEP)),
        "replicates": int(d.number_input("Replicates", 1, 10, 1, key="train_replicates", **KEEP,
                                         help="Run the same settings with this many seeds (seed, seed+1, …): "
                                              "Compare folds them into one group and says whether a gap "
                                              "to another group is beyond seed noise")),
    }
    a, b = st.columns(2)
    out["optimizer"] = a.selectbox("Optimizer", list(OPTIMIZERS), key="train_optimizer", **KEEP,
                                   help="sgd: plain θ ← θ − α∇L (the Learn page's update rule) · "
                                        "adamw: per-weight adaptive steps plus weight decay")
    out["mixed_precision"] = b.selectbox("Mixed precision", list(PRECISIONS), key="train_precision", **KEEP,
                                         help="float16/bfloat16 compute pays off on a GPU; keep 'off' on a CPU")
    a, b, c = st.columns(3)
    if modality in ("text", "image"):
        out["augment"] = a.toggle("Augmentation", False, key="train_augment", **KEEP,
                                  help="text: token dropout/swap · images: small shifts + noise")
    out["from_scratch"] = b.toggle("Random init", False, key="train_scratch", **KEEP,
                                   help="same architecture, random weights: what does pretraining buy? "
                                        "(the transfer control)")
    out["export_model"] = c.toggle("Save .keras", True, key="train_export", **KEEP,
                                   help="save the merged model (W + ΔW) as model.keras in the run folder")
    with st.expander("Data split, size and regularisation"):
        a, b = st.columns(2)
        out["val_fraction"] = a.slider("Validation share", 0.05, 0.45, 0.15, 0.01, key="train_val", **KEEP)
        out["test_fraction"] = b.slider("Test share", 0.05, 0.45, 0.15, 0.01, key="train_test", **KEEP)
        a, b = st.columns(2)
        if task == "classification":
            limit = int(a.number_input("Training examples per class (0 = all)", 0, 100_000, 0, key="train_limit",
                                       **KEEP, help="few-label experiments: only the training split shrinks"))
            out["limit_per_class"] = limit or None
        rows = int(b.number_input("Subsample the dataset to N rows (0 = all)", 0, 1_000_000, 0,
                                  key="train_max_rows", **KEEP))
        out["max_rows"] = rows or None
        a, b = st.columns(2)
        out["weight_decay"] = a.select_slider("AdamW weight decay", [0.0, 1e-4, 1e-3, 0.01, 0.05, 0.1], value=0.01,
                                              key="train_wd", **KEEP)
        if modality == "text":
            out["max_seq_len"] = b.select_slider("Tokens per example", [16, 32, 64, 128, 256, 512], value=64,
                                                 key="train_seq", **KEEP)
        out["strategy"] = st.selectbox("Devices", list(STRATEGIES), key="train_strategy", **KEEP,
                                       help="default: one device · mirrored: every local GPU · "
                                            "multiworker: several machines (TF_CONFIG)")
        a, b = st.columns(2)
        out["prefix_cache"] = a.toggle("Cache frozen layers", True, key="train_prefix_cache", **KEEP,
                                       help="while the lowest layer groups have nothing to train, run them once per "
                                            "example (inference mode: without their dropout) instead of every step")
        if modality == "text":
            out["length_buckets"] = b.toggle("Length buckets", True, key="train_buckets", **KEEP,
                                             help="batches of texts of similar length, each cut to its longest "
                                                  "row: less padding to compute")
        a, b, c = st.columns(3)
        patience = int(a.number_input("Early stopping: patience (0 = off)", 0, 50, 0, key="train_es", **KEEP,
                                      help="end after this many epochs without a better validation metric"))
        out["early_stopping"] = patience or None
        if patience:
            metrics = ["val/loss", "val/accuracy" if task == "classification" else "val/mae"]
            out["early_stopping_metric"] = b.selectbox("on", metrics, key="train_es_metric", **KEEP)
            out["restore_best"] = c.toggle("Keep the best epoch", True, key="train_es_best", **KEEP)
    return out


# -- "Run again with changes": a run's config back into this form -------------------------------
FORM_KEYS = {"data": "train_data", "method": "train_method", "share": "train_share", "tie_layers": "train_tie",
             "hierarchical": "train_hier", "lr_schedule": "train_schedule", "warmup_frac": "train_warmup",
             "plateau_factor": "train_pl_factor", "plateau_patience": "train_pl_patience", "epochs": "train_epochs",
             "batch_size": "train_batch", "seed": "train_seed", "optimizer": "train_optimizer",
             "mixed_precision": "train_precision", "augment": "train_augment", "from_scratch": "train_scratch",
             "export_model": "train_export", "val_fraction": "train_val", "test_fraction": "train_test",
             "weight_decay": "train_wd", "max_seq_len": "train_seq", "strategy": "train_strategy",
             "early_stopping_metric": "train_es_metric", "restore_best": "train_es_best",
             "prefix_cache": "train_prefix_cache", "length_buckets": "train_buckets"}


def fork(config: dict[str, Any], modality: str) -> list[str]:
    """Put a run's settings into the Train form's widgets (before the page draws them); returns the
    settings it could not carry (a CSV's or an uploaded model's file, which the form asks for again)."""
    state, left = st.session_state, []
    state["train_source"] = "built-in"
    for field, key in FORM_KEYS.items():
        if config.get(field) is not None:
            state[key] = config[field]
    state[f"train_model_{modality}"] = config["model"]
    state["train_limit"], state["train_max_rows"] = config.get("limit_per_class") or 0, config.get("max_rows") or 0
    state["train_es"] = config.get("early_stopping") or 0
    state["train_disc_on"] = config.get("discriminative") is not None
    if config.get("discriminative") is not None:
        state["train_disc"] = config["discriminative"]
    state["train_lr_default"] = config.get("lr") is None
    if config.get("lr") is not None:
        state["train_lr"] = min(LR_CHOICES, key=lambda v: abs(v - config["lr"]))
    if config.get("stage_epochs") or config.get("stage_steps"):
        state["train_stage_unit"] = "epochs" if config.get("stage_epochs") else "steps"
        state["train_stage_epochs" if config.get("stage_epochs") else "train_stage_steps"] = (
            config.get("stage_epochs") or config.get("stage_steps"))
    for name, value in (config.get("method_options") or {}).items():
        if not isinstance(value, list | dict) and value is not None:
            state[f"train_{config['method']}_{name}"] = value
    if str(config.get("data", "")).endswith(".csv"):
        left.append(f"the CSV file {Path(config['data']).name} (pick it again)")
    return left
