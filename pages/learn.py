"""Learn: the source document's method, one idea per tab, each beside a live demo computed here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from pages import _learn_demos as demo
from pages._engine_calls import lora_shapes, preview
from pages._format import fmt_count
from pages._nav import use_app_navigation
from pages._plots import plot, stages
from workbench import charts, schedules
from workbench.data import list_datasets
from workbench.errors import WorkbenchError
from workbench.models import list_models
from workbench.peft.lora import NAME as LORA  # this page teaches LoRA itself

use_app_navigation()

NOTEBOOKS = {
    "01_losses_and_gradient_descent.ipynb": "losses and gradient descent, by hand and in Keras",
    "02_lora_and_parameter_sharing.ipynb": "LoRA from scratch; tied LoRA and VeRA parameter counts",
    "03_hierarchical_and_adaptive_lr.ipynb": "staged unfreezing, plateau and discriminative learning rates",
    "04_compare_runs.ipynb": "reading the run store and comparing runs with the same charts as this app",
}
ROOT = Path(__file__).resolve().parents[1]

st.title("Learn")
st.caption("The recipe behind every run: a pretrained model, a loss, gradient descent, and three principles "
           "that make fine-tuning cheap and stable — sharing, hierarchical unfreezing, adaptive learning rates.")
cards = {c.name: c for c in list_models()}
model = st.selectbox("Model for the worked examples", list(cards), index=list(cards).index("tiny-bert")
                     if "tiny-bert" in cards else 0, format_func=lambda n: cards[n].title, key="learn_model")
card = cards[model]
tabs = st.tabs(["1 · Gradient descent", "2 · Losses", "3 · LoRA", "4 · Sharing", "5 · Hierarchical",
                "6 · LR schedules", "Notebooks"])

with tabs[0]:
    text, live = st.columns([2, 3], gap="large")
    with text:
        st.markdown("Training repeats one step: compute the loss **L** on a batch, its gradient **∇L** "
                    "with respect to every trainable weight **θ**, and move against it by the learning rate **α**:")
        st.latex(r"\theta \leftarrow \theta - \alpha \, \nabla_\theta L")
        st.markdown("Here **L(θ) = (θ − 3)²**, so ∇L = 2(θ − 3) and each step multiplies the distance to the "
                    "minimum by **(1 − 2α)**: small α crawls, α = 0.5 jumps there in one step, "
                    "0.5 < α < 1 overshoots and oscillates, α > 1 diverges — the loss curve of a run with too "
                    "high a learning rate. On the Train page, optimizer `sgd` trains with exactly this rule; "
                    "`adamw` adapts the step per weight.")
        lr = st.select_slider("Learning rate α", [0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0, 1.05, 1.2],
                              value=0.1, key="learn_gd_lr")
        a, b = st.columns(2)
        steps = a.slider("Steps", 1, 50, 15, key="learn_gd_steps")
        theta0 = b.slider("Start θ₀", -5.0, 10.0, -3.0, 0.5, key="learn_gd_theta0")
    path = demo.gd_path(theta0, lr, steps)
    with live:
        plot(demo.gd_figure(path), "gradient-descent")
        last = path.iloc[-1]
        c1, c2, c3 = st.columns(3)
        c1.metric("θ after the last step", f"{last['theta']:.4g}", f"{last['theta'] - 3:+.3g} from θ* = 3",
                  delta_color="off", delta_arrow="off")
        c2.metric("Loss", f"{last['loss']:.3g}", f"from {path['loss'].iloc[0]:.3g} at θ₀", delta_color="off",
                  delta_arrow="off")
        c3.metric("Factor per step |1 − 2α|", f"{abs(1 - 2 * lr):.2f}",
                  "diverges" if abs(1 - 2 * lr) > 1 else "converges", delta_arrow="off", delta_color="inverse"
                  if abs(1 - 2 * lr) > 1 else "normal")

with tabs[1]:
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("**Classification: cross-entropy.** The model outputs a probability per class; the loss is "
                    "minus the log of the probability it gave the *true* class. A uniform guess over K classes "
                    "costs **log K** — the loss a fresh classification head starts near.")
        st.latex(r"L_{CE} = -\log p_{\text{true}}")
        a, b = st.columns(2)
        p = a.slider("p(true class)", 0.01, 1.0, 0.7, 0.01, key="learn_ce_p")
        k = b.slider("Classes K", 2, 10, 5, key="learn_ce_k")
        c1, c2, c3 = st.columns(3)
        c1.metric("Loss −log p", f"{-np.log(p):.4f}")
        c2.metric("Uniform guess log K", f"{np.log(k):.4f}")
        c3.metric("∂L/∂logit = p − 1", f"{p - 1:.3f}", help="gradient on the true class's logit (softmax + cross-entropy)")
        plot(demo.cross_entropy_figure(p, k), "cross-entropy")
    with right:
        st.markdown("**Regression: mean squared error.** The loss is the squared distance between prediction "
                    "and target, averaged over the batch; its gradient grows with the error, so large "
                    "mistakes are corrected hardest.")
        st.latex(r"L_{MSE} = \frac{1}{n}\sum_i (\hat y_i - y_i)^2")
        a, b = st.columns(2)
        pred = a.slider("Prediction ŷ", -5.0, 5.0, 1.5, 0.1, key="learn_mse_pred")
        target = b.slider("Target y", -3.0, 3.0, 0.0, 0.1, key="learn_mse_y")
        c1, c2 = st.columns(2)
        c1.metric("Loss (ŷ − y)²", f"{(pred - target) ** 2:.4f}")
        c2.metric("Gradient 2(ŷ − y)", f"{2 * (pred - target):.3f}")
        plot(demo.mse_figure(pred, target), "mse")



def _whole_model(rank: int):
    """The model's real trainable/total count with LoRA (head included), from the engine's preview."""
    data = next((d.name for d in list_datasets() if d.modality == card.modality), None)
    if data is None:
        return None
    try:
        return preview({"model": model, "data": data, "method": LORA, "method_options": {"rank": rank}})
    except WorkbenchError:
        return None


try:
    shapes = lora_shapes(model)
except (WorkbenchError, ImportError, OSError) as exc:  # e.g. MiniLM's weights package not installed
    shapes = None
    st.warning(f"Cannot build {card.title} for the LoRA arithmetic: {exc}")

with tabs[2]:
    text, live = st.columns([2, 3], gap="large")
    with text:
        st.markdown("**LoRA** keeps a pretrained weight matrix **W** (d_out × d_in) frozen and learns a low-rank "
                    "update instead: **B** (d_out × r) and **A** (r × d_in), scaled by α/r. B starts at zero, so "
                    "the model is unchanged at step 0; after training BA can be merged into W, so inference "
                    "costs nothing extra.")
        st.latex(r"W' = W + \frac{\alpha}{r}\, B A")
        r = st.select_slider("Rank r", [1, 2, 4, 8, 16, 32, 64], value=8, key="learn_rank")
        d = st.slider("Toy matrix size d (for the picture)", 6, 48, 32, key="learn_toy_d")
        st.caption("LoRA trains r·(d_in + d_out) numbers instead of d_in·d_out: for a square d×d matrix, 2·d·r "
                   "against d², a saving only while r < d/2. The toy starts at d = 32, r = 8: half the numbers. "
                   "Real layers are wider (MiniLM: d = 384), where r = 8 trains 4 % of a matrix.")
    with live:
        plot(demo.lora_figure(*demo.lora_matrices(d, min(r, d))), "lora-matrices")
    if shapes is not None and not shapes.empty:
        st.markdown(f"**The arithmetic for {card.title}**: the layers LoRA adapts by default, read from the "
                    "built model (count = how many layers have that name and shape).")
        st.dataframe(demo.lora_table(shapes, r), hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="localized")
                                    for c in ("full (per layer)", "LoRA r·(d_in+d_out)")})
        counts = demo.sharing_counts(shapes, r)
        pv = _whole_model(r)
        c1, c2, c3 = st.columns(3)
        c1.metric("Adapted matrices, full", fmt_count(counts["full fine-tuning"]),
                  help=f"{counts['full fine-tuning']:,} weights in the adapted layers")
        c2.metric(f"LoRA on them, r = {r}", fmt_count(counts["LoRA"]),
                  f"{100 * counts['LoRA'] / max(counts['full fine-tuning'], 1):.2f}% of them", delta_color="off", delta_arrow="off",
                  help=f"{counts['LoRA']:,} = Σ r·(d_in + d_out)")
        if pv is not None:
            c3.metric("Whole model trainable (with the new head)", fmt_count(pv.report.trainable),
                      f"{pv.report.percent:.2f}% of {fmt_count(pv.report.total)}", delta_color="off", delta_arrow="off",
                      help=pv.report.summary())

with tabs[3]:
    text, live = st.columns([2, 3], gap="large")
    r = st.session_state.get("learn_rank", 8)
    with text:
        st.markdown("Plain LoRA gives each of the **L** adapted layers its own B and A. Sharing reuses "
                    "parameters across layers:")
        st.markdown("- **plain LoRA**: 2·L·d·r (each layer its own pair)\n"
                    "- **tied LoRA**: 2·d·r + L·r (one pair reused by every layer of that shape, plus a scale "
                    "vector of r numbers per layer, so the layers can still differ)\n"
                    "- **VeRA**: L·(d + r) (B and A are frozen random matrices shared by all layers; each "
                    "layer trains only a scaling vector of size d and one of size r)")
        if shapes is not None and not shapes.empty:
            n_layers = int(shapes["count"].sum())
            first = shapes.iloc[0]
            st.caption(f"{card.title}: L = {n_layers} adapted layers, first shape d_in = {first['d_in']}, "
                       f"d_out = {first['d_out']}, rank r = {r} (set on the LoRA tab). Non-square layers use "
                       "r·(d_in + d_out) and d_out in place of 2·d·r and d. These are the engine's own counts: "
                       "the Train page shows the same numbers plus the new head.")
    with live:
        if shapes is not None and not shapes.empty:
            counts = demo.sharing_counts(shapes, r)
            plot(demo.sharing_figure(counts), "sharing")
            cols = st.columns(3)
            for col, name in zip(cols, ("LoRA", "tied LoRA", "VeRA"), strict=True):
                col.metric(name, f"{counts[name]:,}",
                           f"{counts[name] / max(counts['LoRA'], 1):.2g}× plain LoRA" if name != "LoRA" else None,
                           delta_color="off", delta_arrow="off")

with tabs[4]:
    st.markdown("Fine-tuning everything at once can wreck what the lower layers learned before the new head "
                "makes sense. **Hierarchical fine-tuning** trains in stages and unfreezes layer groups one at a "
                "time. The source document goes **bottom-up** (lowest group first, then upward); ULMFiT goes "
                "**top-down** (the head first, then one group lower per stage). The head always trains.")
    left, right = st.columns(2, gap="large")
    groups = list(card.layer_groups)
    with left:
        plot(stages(groups, "bottom-up"), "stages-bottom-up")
    with right:
        plot(stages(groups, "top-down"), "stages-top-down")

with tabs[5]:
    st.markdown("The learning rate α rarely stays fixed. **Warmup-cosine** ramps up while the optimiser's "
                "statistics are noisy, then decays smoothly; ULMFiT's **slanted triangular** rises fast and "
                "decays long; **plateau** (the source document's rule) cuts α whenever validation loss stops "
                "improving. **Discriminative** rates give lower layer groups smaller steps.")
    a, b, c = st.columns(3)
    base = a.select_slider("Base LR", [1e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2], value=2e-3, key="learn_base_lr",
                           format_func=lambda v: f"{v:g}")
    total = b.slider("Total steps", 20, 2000, 300, 10, key="learn_total")
    warm = c.slider("Warmup fraction (warmup-cosine)", 0.0, 0.5, 0.1, 0.01, key="learn_warm")
    curves = {name: schedules.schedule_curve(name, base_lr=base, total_steps=total,
                                             **({"warmup_frac": warm} if name == "warmup-cosine" else {}))
              for name in ("constant", "warmup-cosine", "stlr")}
    plot(charts.schedule_figure(curves, title="Step-based schedules"), "schedules")
    left, right = st.columns(2, gap="large")
    with left:
        text = st.text_input("Validation loss per epoch (synthetic)", "1.00, 0.80, 0.72, 0.71, 0.73, 0.72, "
                             "0.66, 0.67, 0.68, 0.69", key="learn_val_losses")
        a, b = st.columns(2)
        factor = a.select_slider("Cut factor", [0.1, 0.2, 0.3, 0.5, 0.7, 0.9], value=0.5, key="learn_pl_factor")
        patience = b.slider("Patience (epochs)", 1, 5, 1, key="learn_pl_patience")
        try:
            losses = demo.parse_losses(text)
        except ValueError as exc:
            st.error(f"Cannot read the losses: {exc}.")
            losses = None
        if losses:
            spe = max(1, total // len(losses))
            curve = schedules.plateau_curve(losses, base_lr=base, steps_per_epoch=spe, factor=factor,
                                            patience=patience)
            plot(demo.plateau_figure(losses, curve, spe), "plateau")
    with right:
        disc = st.slider("Discriminative factor", 1.0, 4.0, 2.6, 0.1, key="learn_disc",
                         help="ULMFiT uses 2.6: each group below the top learns 2.6× slower")
        mult = schedules.discriminative_multipliers(groups, disc)
        plot(demo.multipliers_figure(mult, base), "discriminative")

with tabs[6]:
    st.markdown("The same ideas, step by step in Jupyter, using this project's engine and charts. "
                "Run `make notebooks` in the project folder for the command that opens them.")
    for name, about in NOTEBOOKS.items():
        path = ROOT / "notebooks" / name
        left, right = st.columns([4, 1], vertical_alignment="center")
        left.markdown(f"**`notebooks/{name}`** — {about}")
        if path.is_file():
            right.download_button("Download", path.read_bytes(), file_name=name, mime="application/x-ipynb+json",
                                  key=f"learn_nb_{name}", on_click="ignore", icon=":material/download:")
        else:
            right.caption("not in this checkout yet")
