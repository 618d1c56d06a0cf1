"""Write the four teaching notebooks in notebooks/ from the cell texts below.

The notebooks are generated so they stay reviewable as plain Python (one diff per changed cell) and
are always committed clean: no outputs, no execution counts, stable cell ids.

    .venv/bin/python scripts/make_notebooks.py          # (re)write notebooks/*.ipynb
    .venv/bin/python scripts/make_notebooks.py --check  # exit 1 if a committed notebook is stale

Edit the cells here, not in Jupyter (or copy your Jupyter edits back here), then regenerate.
Notebook code uses the public `workbench` API only: the notebooks double as its documentation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from textwrap import dedent

import nbformat

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "notebooks"

Cell = tuple[str, str]


def md(text: str) -> Cell:
    return ("markdown", dedent(text).strip("\n"))


def code(text: str) -> Cell:
    return ("code", dedent(text).strip("\n"))


# Shared cells ---------------------------------------------------------------------------------------

RUN_STORE = code(r'''
    def app_runs_dir() -> Path:
        """The run store the app uses: $WORKBENCH_RUNS_DIR, else the project's ./runs.

        Jupyter usually starts in notebooks/, so a bare ./runs would be a second, separate store.
        """
        if "WORKBENCH_RUNS_DIR" not in os.environ and Path.cwd().name == "notebooks":
            return Path.cwd().parent / "runs"
        return default_runs_dir()


    manager = RunManager.get(app_runs_dir())  # the same manager class the app and the CLI use
    print("runs are recorded in", manager.store.runs_dir.resolve())
''')

# 01 · Losses and gradient descent ---------------------------------------------------------------------

NB01 = [
    md(r'''
        # 1 · Losses and gradient descent

        **What this notebook teaches**

        - what a **loss function** measures, and how the two losses of this course are computed:
          **mean squared error** (regression) and **cross-entropy** (classification), first by hand with
          NumPy, then with `keras.losses`, with the same numbers;
        - the update rule every optimizer in the course builds on,
          $\theta \leftarrow \theta - \alpha \, \nabla_\theta L(\theta)$;
        - how to write **one training step yourself** with `tf.GradientTape`, and that `model.fit` with
          plain SGD does exactly the same thing (same starting weights, same batches, same losses);
        - what the **learning rate** $\alpha$ does: too small, about right, too large.

        No pretrained model yet: this is the foundation for notebooks 2–4. It runs in well under a
        minute on a laptop CPU. Run the cells top to bottom (*Run → Run All Cells*).

        When TensorFlow starts it prints a few lines on stderr (oneDNN, "could not find cuda drivers"):
        information, not errors.
    '''),
    code(r'''
        import workbench  # first: quiet TensorFlow logging and offline mode, set before TensorFlow loads

        import keras
        import numpy as np
        import pandas as pd
        import tensorflow as tf
        from IPython.display import display

        from workbench import charts
        from workbench.data import load, split_dataset

        print("Keras", keras.__version__, "with the", keras.backend.backend(), "backend")
    '''),
    md(r'''
        ## 1. Mean squared error

        For regression the model predicts a number $\hat y$ for each example, and the loss is the mean
        of the squared errors:

        $$\text{MSE} = \frac{1}{n} \sum_{i=1}^{n} (y_i - \hat y_i)^2$$

        Squaring makes every error count positively and punishes one big error more than several small ones.
    '''),
    code(r'''
        y_true = np.array([3.0, -0.5, 2.0, 7.0])
        y_pred = np.array([2.5, 0.0, 2.0, 8.0])

        mse_by_hand = np.mean((y_true - y_pred) ** 2)
        mse_keras = float(keras.losses.MeanSquaredError()(y_true, y_pred))

        print(f"errors {y_true - y_pred}  ->  MSE by hand {mse_by_hand:.6f}, keras {mse_keras:.6f}")
        assert np.isclose(mse_by_hand, mse_keras)
    '''),
    md(r'''
        ## 2. Cross-entropy

        For classification with $K$ classes the model outputs $K$ scores $z$ (*logits*). The softmax
        turns them into probabilities, and the cross-entropy of one example whose true class is $y$ is
        minus the log of the probability the model gave to that class:

        $$p_k = \frac{e^{z_k}}{\sum_j e^{z_j}}, \qquad \text{CE} = -\log p_y$$

        It is close to 0 when the model is confident and right, and large when it is confident and wrong.
        The loss of a batch is the mean over its examples.
    '''),
    code(r'''
        labels = np.array([0, 2, 1])             # the true class of each of three examples
        logits = np.array([[2.0, 0.5, -1.0],     # confident and right
                           [0.1, 0.2, 0.3],      # unsure (and right, barely)
                           [3.0, -2.0, 0.0]])    # confident and wrong


        def softmax(z):
            z = z - z.max(axis=1, keepdims=True)  # changes nothing mathematically, but exp() cannot overflow
            e = np.exp(z)
            return e / e.sum(axis=1, keepdims=True)


        probs = softmax(logits)
        per_example = -np.log(probs[np.arange(len(labels)), labels])
        ce_by_hand = per_example.mean()

        # Keras from logits (what the workbench uses: numerically safer) and from probabilities + one-hot labels.
        ce_keras = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits))
        ce_keras_probs = float(keras.losses.CategoricalCrossentropy()(np.eye(3)[labels], probs))

        display(pd.DataFrame({"p(true class)": probs[np.arange(3), labels], "-log p": per_example},
                             index=["confident, right", "unsure", "confident, wrong"]).round(4))
        print(f"CE by hand {ce_by_hand:.6f}, keras from logits {ce_keras:.6f}, keras from probabilities {ce_keras_probs:.6f}")
        assert np.isclose(ce_by_hand, ce_keras, atol=1e-5) and np.isclose(ce_by_hand, ce_keras_probs, atol=1e-5)
    '''),
    md(r'''
        A model that knows nothing gives every class the same score, so $p_y = 1/K$ and the loss is
        $\log K$. That is a useful sanity check for the first step of any classification run.
    '''),
    code(r'''
        know_nothing = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, np.zeros((3, 3))))
        print(f"all-zero logits: CE = {know_nothing:.4f};  log(3) = {np.log(3):.4f}")
    '''),
    md(r'''
        ## 3. Gradient descent, written by hand

        Training means lowering the loss by changing the parameters $\theta$ (all weights and biases).
        The gradient $\nabla_\theta L$ points uphill, so each step moves a little downhill:

        $$\theta \leftarrow \theta - \alpha \, \nabla_\theta L(\theta)$$

        With mini-batches, $L$ is the loss of one batch: that is *stochastic* gradient descent (SGD).

        The data: the **diabetes** dataset (442 patients, 10 measurements, the target is disease
        progression one year later). We standardise inputs and target with training-split statistics,
        so the numbers the model sees are around $0 \pm 1$.
    '''),
    code(r'''
        ds = load("diabetes")
        split = split_dataset(ds, seed=0)
        print(ds.card.title, "·", split.sizes(), "· features:", ", ".join(ds.card.input_columns))

        x_mean, x_std = split.x_train.mean(axis=0), split.x_train.std(axis=0)
        y_mean, y_std = split.y_train.mean(), split.y_train.std()
        x_train = ((split.x_train - x_mean) / x_std).astype("float32")
        y_train = ((split.y_train - y_mean) / y_std).astype("float32").reshape(-1, 1)
    '''),
    md(r'''
        A tiny network (10 inputs → 16 tanh units → 1 output) and one training step. The step has two
        phases, and their order matters: **first** every gradient, all at the current $\theta$; **then**
        every update. If a layer were updated before the next layer's gradient was computed, that
        gradient would belong to a model that never existed. (`optimizer.apply(grads, variables)` does
        phase 2 for you; here we write it out.)
    '''),
    code(r'''
        def make_mlp(seed=0):
            """10 inputs -> 16 tanh units -> 1 output. The same seed gives the same initial weights."""
            keras.utils.set_random_seed(seed)
            return keras.Sequential([keras.Input((x_train.shape[1],)),
                                     keras.layers.Dense(16, activation="tanh"),
                                     keras.layers.Dense(1)])


        mse = keras.losses.MeanSquaredError()


        def train_step(model, xb, yb, lr):
            """One step of gradient descent on one batch: theta <- theta - lr * dL/dtheta for every trainable theta."""
            with tf.GradientTape() as tape:
                loss = mse(yb, model(xb, training=True))           # forward pass, recorded on the tape
            grads = tape.gradient(loss, model.trainable_variables)  # 1. every gradient, at the current theta
            for theta, grad in zip(model.trainable_variables, grads):
                theta.assign_sub(lr * grad)                         # 2. then every update
            return float(loss)                                      # the loss *before* this step's update
    '''),
    code(r'''
        LR, BATCH, EPOCHS = 0.05, 32, 20
        batches = [(x_train[i:i + BATCH], y_train[i:i + BATCH]) for i in range(0, len(x_train), BATCH)]  # fixed order

        by_hand = make_mlp()
        initial_weights = by_hand.get_weights()
        epoch_losses = []
        for epoch in range(EPOCHS):
            losses = [train_step(by_hand, xb, yb, LR) for xb, yb in batches]
            # Keras reports an epoch's loss as the mean over its batches, weighted by batch size; do the same.
            epoch_losses.append(np.average(losses, weights=[len(xb) for xb, _ in batches]))

        print(f"{len(batches)} batches per epoch; training loss {epoch_losses[0]:.4f} (epoch 1) -> {epoch_losses[-1]:.4f} (epoch {EPOCHS})")
    '''),
    md(r'''
        ## 4. The same thing with `model.fit`

        `model.fit` with `keras.optimizers.SGD` (no momentum) applies the very same rule. Give it the
        same initial weights and the same batches in the same order (`shuffle=False`), and the loss
        curves agree to float precision.
    '''),
    code(r'''
        with_fit = make_mlp()
        with_fit.set_weights(initial_weights)  # make_mlp() is seeded anyway; this makes the point explicit
        with_fit.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss="mse")
        history = with_fit.fit(x_train, y_train, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)

        fit_losses = np.array(history.history["loss"])
        np.testing.assert_allclose(epoch_losses, fit_losses, rtol=1e-4)
        weight_gap = max(np.abs(a - b).max() for a, b in zip(by_hand.get_weights(), with_fit.get_weights()))
        assert weight_gap < 1e-4
        print(f"largest difference: epoch loss {np.abs(np.array(epoch_losses) - fit_losses).max():.1e}, "
              f"weights {weight_gap:.1e}")
    '''),
    md(r'''
        The workbench's chart functions read the run store's *long* format: one row per
        `(run_id, step, epoch, key, value)`. Any curve can be put in that format, so the same charts
        draw our hand-made experiments too.
    '''),
    code(r'''
        def curves_frame(curves, key="train/loss"):
            """{name: values, one per step} -> (metrics, runs) frames in the run store's format."""
            metrics = pd.concat([pd.DataFrame({"run_id": name, "step": np.arange(1, len(values) + 1),
                                               "epoch": np.arange(len(values)), "key": key,
                                               "value": np.asarray(values, dtype=float)})
                                 for name, values in curves.items()])
            return metrics, pd.DataFrame({"id": list(curves), "name": list(curves)})


        metrics, runs = curves_frame({"GradientTape, by hand": epoch_losses, "model.fit + SGD": fit_losses})
        fig = charts.compare_figure(metrics, runs, key="train/loss", smoothing=0, band_by_seed=False)
        fig.update_layout(title_text="Training loss per epoch: hand-written steps vs model.fit (on top of each other)")
        fig.update_xaxes(title_text="epoch")
        fig.show()
    '''),
    md(r'''
        ## 5. What the learning rate does

        For a **linear** model with MSE the loss is a bowl (a quadratic), and we can compute how curved
        its steepest direction is: the largest eigenvalue $\lambda_{\max}$ of the Hessian
        $H = \frac{2}{n}\tilde X^\top \tilde X$ ($\tilde X$ = inputs plus a column of ones for the bias).
        Along that direction one step multiplies the error by $|1 - \alpha\lambda_{\max}|$, so gradient
        descent converges only if $\alpha < 2/\lambda_{\max}$.

        We try three learning rates around that limit with *full-batch* steps (every step sees the whole
        training set), so the curves show the effect of $\alpha$ alone, without batch noise. The dotted
        line is the best a linear model can do (least squares).
    '''),
    code(r'''
        X1 = np.c_[x_train, np.ones(len(x_train))]
        hessian = 2 * X1.T @ X1 / len(X1)
        limit = 2 / np.linalg.eigvalsh(hessian).max()
        coef, *_ = np.linalg.lstsq(X1, y_train, rcond=None)
        best_loss = float(np.mean((X1 @ coef - y_train) ** 2))
        print(f"stable for alpha < 2 / lambda_max = {limit:.3f};  least-squares loss = {best_loss:.4f}")


        def linear_model():
            keras.utils.set_random_seed(0)
            return keras.Sequential([keras.Input((x_train.shape[1],)), keras.layers.Dense(1)])


        STEPS = 40
        rates = {"too small": 0.02 * limit, "about right": 0.7 * limit, "too large": 1.1 * limit}
        lr_curves = {}
        for label, lr in rates.items():
            model = linear_model()
            lr_curves[f"{label} (alpha = {lr:.3f})"] = [train_step(model, x_train, y_train, lr) for _ in range(STEPS)]
        display(pd.DataFrame({name: [curve[0], curve[9], curve[-1]] for name, curve in lr_curves.items()},
                             index=["step 1", "step 10", f"step {STEPS}"]).round(4))
    '''),
    code(r'''
        metrics, runs = curves_frame(lr_curves)
        fig = charts.compare_figure(metrics, runs, key="train/loss", smoothing=0, band_by_seed=False)
        fig.add_hline(y=best_loss, line_dash="dot", annotation_text="least squares (best possible)")
        fig.update_yaxes(type="log", title_text="training loss (log scale)")
        fig.update_layout(title_text="Full-batch gradient descent with three learning rates")
        fig.show()
    '''),
    md(r'''
        ## Questions

        1. Set `BATCH = 310` (the whole training set) and then `BATCH = 4` (about 20 seconds), and rerun
           sections 3–4. After
           the same number of epochs, which reaches the lower loss, and which takes more steps? Why do the
           hand-written loop and `model.fit` still agree?
        2. The "too large" curve grows by about the same factor every step. Predict that factor from
           $\alpha$ and $\lambda_{\max}$ (the error is multiplied by $|1 - \alpha\lambda_{\max}|$ per step,
           the loss by its square) and check it against the table.
        3. The digits dataset of notebook 3 has 10 classes. What training loss do you expect at the very
           first step of a classification run on it, and what would a first loss far above that tell you?
    '''),
]

# 02 · LoRA and parameter sharing ----------------------------------------------------------------------

NB02 = [
    md(r'''
        # 2 · LoRA and parameter sharing

        **What this notebook teaches**

        - **LoRA** (Hu et al., 2021): keep a pretrained weight matrix $W$ frozen and learn a low-rank
          update $\Delta W = \frac{\alpha}{r} B A$ with a small rank $r$, so a $d_{in} \times d_{out}$
          layer trains $r\,(d_{in} + d_{out})$ numbers instead of $d_{in}\, d_{out}$;
        - what that means on a **real layer**: a query projection of all-MiniLM-L6-v2 (22.7M parameters),
          and how the workbench's LoRA layer computes $W + \Delta W$;
        - **parameter sharing**: tied LoRA (one $A, B$ shared by all layers, plus a small per-layer scale)
          and VeRA-style LoRA (frozen shared random $A, B$, per-layer scaling vectors only), as parameter
          arithmetic;
        - a short fine-tune of **full vs LoRA vs tied vs VeRA** on SMS spam, and the trade-off as one
          chart: accuracy against trainable parameters.

        About a minute on a laptop CPU (most of it: four short fine-tunes of tiny-bert). The runs are
        recorded in the same store as the app's, so they also appear on its Compare page. (The lines
        TensorFlow and keras-hub print on stderr while loading are information, not errors.)
    '''),
    code(r'''
        import workbench  # first: quiet TensorFlow logging and offline mode, set before TensorFlow loads

        import os
        from dataclasses import replace
        from pathlib import Path

        import keras
        import numpy as np
        import pandas as pd
        from IPython.display import display

        from workbench import charts
        from workbench.config import TrainConfig
        from workbench.data import load, split_dataset
        from workbench.peft.lora import lora_param_count
        from workbench.peft.lora_layers import matrix_shape
        from workbench.preview import preview
        from workbench.run_tables import metrics_table
        from workbench.runs import RunManager, default_runs_dir
        from workbench.train.trainer import prepare
    '''),
    RUN_STORE,
    md(r'''
        ## 1. One real layer: a query projection of MiniLM

        `prepare(config)` does steps 1–3 of the workbench's recipe: load and split the data, build the
        pretrained model with a new task head, apply the method. With `method="full"` nothing is
        changed yet, so we can look at the original layers. (Building MiniLM takes a few seconds; we do
        not train it here: that is a job for a GPU.)
    '''),
    code(r'''
        minilm_config = TrainConfig(model="minilm-l6", data="sms-spam", method="full", max_rows=200, max_seq_len=32)
        keras.utils.set_random_seed(minilm_config.seed)
        minilm = prepare(minilm_config)
        big = minilm.task_model
        print(big.card.title, "·", big.card.architecture)
        print("layer groups, bottom to top:", big.group_names)
        print(minilm.report.summary())

        queries = sorted(big.lora_target_layers(["query"]), key=lambda layer: layer.path)
        query = queries[0]
        d_in, d_out = matrix_shape(query)
        print(f"\n{len(queries)} query projections (one per transformer block); the first: {query.path}")
        print(f"its kernel has shape {tuple(query.kernel.shape)} (hidden x heads x head size): a {d_in} x {d_out} matrix")
    '''),
    md(r'''
        Keras multiplies inputs from the left ($x W$, with $W$ of shape $d_{in} \times d_{out}$), so in
        Keras LoRA's factors are $A$: $d_{in} \times r$ and $B$: $r \times d_{out}$, and
        $\Delta W = \frac{\alpha}{r} A B$. It is the paper's $\frac{\alpha}{r} B A$ transposed (the paper
        writes $W$ as $d_{out} \times d_{in}$): the same update. Whatever $A$ and $B$ are, $\Delta W$ has
        rank at most $r$.
    '''),
    code(r'''
        r, alpha = 8, 16.0
        W = keras.ops.convert_to_numpy(query.kernel).reshape(d_in, d_out)
        rng = np.random.default_rng(0)
        A = rng.normal(0, 1 / np.sqrt(d_in), (d_in, r))
        B = rng.normal(0, 0.01, (r, d_out))  # LoRA starts B at zero (so dW = 0 at step 0); random here to see a dW
        delta_W = (alpha / r) * A @ B

        display(pd.Series({
            "W (frozen)": f"{d_in} x {d_out} = {W.size:,} numbers",
            "A": f"{d_in} x {r} = {A.size:,}",
            "B": f"{r} x {d_out} = {B.size:,}",
            "dW = (alpha/r) A B": f"{delta_W.shape[0]} x {delta_W.shape[1]}, rank {np.linalg.matrix_rank(delta_W)}",
            "LoRA trains": f"r (d_in + d_out) = {r * (d_in + d_out):,}  ({100 * (A.size + B.size) / W.size:.1f}% of W)",
        }).to_frame("one query projection of MiniLM"))
    '''),
    md(r'''
        In the workbench, `method="lora"` swaps each target layer (by default every `query` and `value`
        projection) onto a LoRA layer: $W$ becomes non-trainable, the layer gains trainable
        `lora_kernel_a` ($A$) and `lora_kernel_b` ($B$, zeros at the start), and its `kernel` property
        returns $W + \frac{\alpha}{r} A B$. We check that on tiny-bert (hidden size 128), which builds in
        a second.
    '''),
    code(r'''
        small_config = TrainConfig(model="tiny-bert", data="sms-spam", method="lora",
                                   method_options={"rank": 4, "alpha": 8.0}, max_rows=200, max_seq_len=32)
        keras.utils.set_random_seed(small_config.seed)
        small = prepare(small_config)
        print(small.report.summary())

        layer = sorted(small.task_model.lora_target_layers(["query"]), key=lambda layer: layer.path)[0]
        n_in, n_out = matrix_shape(layer)
        W0 = keras.ops.convert_to_numpy(layer.kernel).reshape(n_in, n_out)  # B = 0, so this is W itself
        A_small = keras.ops.convert_to_numpy(layer.lora_kernel_a)
        print(f"{layer.path}: A {A_small.shape} trainable={layer.lora_kernel_a.trainable}, "
              f"B {tuple(layer.lora_kernel_b.shape)} trainable={layer.lora_kernel_b.trainable}")

        B_small = np.random.default_rng(1).normal(0, 0.05, tuple(layer.lora_kernel_b.shape)).astype("float32")
        layer.lora_kernel_b.assign(B_small)  # pretend that training moved B
        W_now = keras.ops.convert_to_numpy(layer.kernel).reshape(n_in, n_out)
        np.testing.assert_allclose(W_now, W0 + (layer.lora_alpha / layer.lora_rank) * A_small @ B_small, atol=1e-5)
        print("layer.kernel == W + (alpha/r) A B:  yes.  Rank of the change:",
              np.linalg.matrix_rank(W_now - W0, tol=1e-3), "(= r)")
    '''),
    md(r'''
        ## 2. Parameter arithmetic: full vs LoRA vs tied vs VeRA

        For $L$ target matrices of shape $d_{in} \times d_{out}$ and rank $r$ (the new classification head
        trains in every method and is added on top):

        | method | trainable parameters (without the head) |
        |---|---|
        | full fine-tuning | every weight of the model |
        | LoRA | $\sum_\ell r\,(d_{in} + d_{out})$: each layer owns its $A$ and $B$ |
        | tied LoRA | $\sum_{\text{shapes}} r\,(d_{in} + d_{out}) + L\,r$: one $A, B$ per distinct shape, shared, plus a scale vector of $r$ per layer |
        | VeRA-style | $\sum_\ell (r + d_{out})$: $A, B$ frozen, random and shared; each layer trains vectors $d$ ($r$) and $b$ ($d_{out}$) |

        `lora_param_count` gives the closed form; `preview(config)` builds the model with the method
        applied and counts what really trains (what the app shows next to its Start button). For
        tiny-bert we use both and check that they agree; for MiniLM the formula on the model built above.
    '''),
    code(r'''
        base = TrainConfig(model="tiny-bert", data="sms-spam", method="lora", method_options={"rank": 8, "alpha": 16.0},
                           max_rows=600, max_seq_len=32, epochs=2, seed=0, export_model=False)
        configs = {
            # Full fine-tuning's default LR (5e-5) suits long runs of big models; two short epochs need more.
            "full": base.switch_method("full", lr=3e-4, name="nb02 · full"),  # full has no LoRA options
            "LoRA": replace(base, method="lora", name="nb02 · LoRA r=8"),
            "LoRA, tied": replace(base, method="lora", share="tied", name="nb02 · LoRA r=8 tied"),
            # VeRA trains only scaling vectors, which need a larger step (the VeRA paper uses larger LRs too).
            "LoRA, VeRA-style": replace(base, method="lora", share="vera", lr=1e-2, name="nb02 · LoRA r=8 VeRA"),
        }
        SHARE = {"full": None, "LoRA": "off", "LoRA, tied": "tied", "LoRA, VeRA-style": "vera"}


        def head_params(task_model):
            return sum(int(np.prod(v.shape)) for v in task_model.head_variables())


        rows = []
        for label, config in configs.items():
            plan = preview(config)  # builds tiny-bert with the method applied; trains nothing
            share = SHARE[label]
            if share is not None:   # the closed form must match what the built model really trains
                formula = lora_param_count(small.task_model, config.options.rank, share=share) + head_params(small.task_model)
                assert formula == plan.report.trainable, (label, formula, plan.report.trainable)
            big_trainable = (minilm.report.trainable if share is None else
                             lora_param_count(big, config.options.rank, share=share) + head_params(big))
            rows.append({"method": label,
                         "tiny-bert trainable": plan.report.trainable,
                         "tiny-bert %": round(plan.report.percent, 3),
                         "MiniLM trainable": big_trainable,
                         "MiniLM %": round(100 * big_trainable / minilm.report.total, 3)})
        arithmetic = pd.DataFrame(rows).set_index("method")
        display(arithmetic.style.format({"tiny-bert trainable": "{:,}", "MiniLM trainable": "{:,}"}))
        print("Full fine-tuning is below 100%: the pretraining pooler is unused by the classifier and stays frozen.")
    '''),
    md(r'''
        ## 3. Fine-tune four ways

        `manager.start(config)` checks the config and the data, records the run as *queued* and trains it
        in a background thread; `manager.wait(run_id)` blocks until it ends. This is exactly what the
        app's Start button does. We start each run when the previous one has finished, so every run is
        reproducible on its own. Each takes a few seconds to a quarter of a minute.
    '''),
    code(r'''
        run_ids = {}
        for label, config in configs.items():
            run_id = manager.start(config)
            status = manager.wait(run_id)
            run_ids[label] = run_id
            record = manager.store.get_run(run_id)
            assert status == "completed", f"{label}: {record.error}"
            print(f"{label:17s} {record.wall_s:5.1f} s   {record.trainable_params:>8,} trainable   "
                  f"test accuracy {record.final_metrics['test_accuracy']:.3f}")
    '''),
    code(r'''
        ids = list(run_ids.values())
        runs = manager.store.runs_frame(ids).set_index("id").loc[ids].reset_index()  # keep our order
        metrics = manager.store.metrics(ids)
        charts.compare_figure(metrics, runs, key="train/loss", x="epoch").show()
    '''),
    code(r'''
        table = metrics_table(runs, metrics)
        display(table[["method", "trainable_params", "trainable_pct", "final_val_loss", "test_accuracy", "wall_s"]]
                .style.format({"trainable_params": "{:,.0f}", "trainable_pct": "{:.2f}%", "final_val_loss": "{:.3f}",
                               "test_accuracy": "{:.3f}", "wall_s": "{:.1f} s"}))

        # The bar to beat: always answer the most common class of the (identical) test split.
        test_labels = split_dataset(load(base.data), seed=base.seed, max_rows=base.max_rows).y_test
        majority = np.bincount(test_labels.astype(int)).max() / len(test_labels)
        print(f"{len(test_labels)} test messages; always answering 'ham' scores {majority:.3f}")
    '''),
    md(r'''
        The PEFT trade-off in one picture: test accuracy against trainable parameters (log scale); the
        bubble area is the wall time of the run.
    '''),
    code(r'''
        labels = {run_id: label for label, run_id in run_ids.items()}
        fig = charts.efficiency_figure(table.assign(method=table["run_id"].map(labels)), metric="test_accuracy")
        fig.add_hline(y=majority, line_dash="dot", annotation_text="always 'ham'")
        fig.show()
    '''),
    md(r'''
        ## Questions

        1. How many parameters does LoRA with $r = 8$ on MiniLM's query and value projections train, and
           what fraction of the model is that? Use `lora_param_count(big, rank, targets)` to redo it for
           $r = 16$, and for LoRA on `["query", "key", "value"]`.
        2. VeRA-style sharing trains about ten times fewer parameters than plain LoRA here. Which numbers
           does it still learn, what stays random, and why might it need a larger learning rate?
        3. The test split has about 90 messages. How many messages is a 1-point accuracy difference? What
           would you do before claiming that one method beats another (notebook 4 shows one way)?
    '''),
]

# 03 · Hierarchical fine-tuning and adaptive learning rates --------------------------------------------

NB03 = [
    md(r'''
        # 3 · Hierarchical fine-tuning and adaptive learning rates

        **What this notebook teaches**

        - **hierarchical (staged) fine-tuning**: unfreeze layer groups in stages, either **bottom-up**
          (lowest group first, as in the course's source document) or **top-down** (the head first, then
          lower and lower groups: ULMFiT's *gradual unfreezing*), and read the **unfreezing timeline**
          the engine records;
        - **discriminative learning rates**: lower layers, which hold general features, learn slower
          (ULMFiT divides the LR by 2.6 per group);
        - **learning-rate schedules**: *plateau* ("if the model stops improving, lower the LR"),
          *warmup-cosine* and ULMFiT's *slanted triangular* LR (STLR), plotted before training and their
          effect on the loss during training;
        - **how far each layer actually moved**: $\lVert W_t - W_0 \rVert / \lVert W_0 \rVert$ per layer
          group, as a heatmap.

        The model is `mnist-cnn` (a small CNN pretrained on MNIST) fine-tuned on scikit-learn's `digits`
        (a different source of handwritten digits) with 20 labels per class, so each run takes seconds.
        The whole notebook runs in about a minute. (The lines TensorFlow prints on stderr when it starts
        are information, not errors.)
    '''),
    code(r'''
        import workbench  # first: quiet TensorFlow logging and offline mode, set before TensorFlow loads

        import os
        import time
        from dataclasses import replace
        from pathlib import Path

        import keras
        import numpy as np
        import pandas as pd
        import plotly.graph_objects as go
        from IPython.display import display

        from workbench import charts, schedules
        from workbench.config import TrainConfig
        from workbench.presets import presets
        from workbench.preview import preview
        from workbench.run_tables import metrics_table
        from workbench.runs import RunManager, default_runs_dir
        from workbench.train.trainer import prepare, train
    '''),
    RUN_STORE,
    code(r'''
        base = TrainConfig(model="mnist-cnn", data="digits", method="full", limit_per_class=20, epochs=4,
                           batch_size=16, lr=1e-3, seed=0, export_model=False, name="nb03 · full")
        plan = preview(base)
        groups = plan.group_names  # bottom to top; "head" is the new classifier
        print(f"splits {plan.split_sizes}; {plan.steps_per_epoch} steps per epoch, {plan.total_steps} steps in all")
        print(plan.report.summary())
        display(pd.Series(plan.report.by_group, name="trainable parameters").to_frame().T)


        def run_all(configs):
            """Train configs one after another through the run manager (as the app does); return their run ids."""
            ids = []
            for config in configs:
                run_id = manager.start(config)  # checks config and data, then trains in a background thread
                status = manager.wait(run_id)   # blocks until the run ends
                assert status == "completed", manager.store.get_run(run_id).error
                ids.append(run_id)
            return ids


        def runs_and_metrics(ids):
            runs = manager.store.runs_frame(ids).set_index("id").loc[ids].reset_index()  # keep our order
            return runs, manager.store.metrics(ids)
    '''),
    md(r'''
        ## 1. Hierarchical fine-tuning: bottom-up vs top-down

        The model's layer groups, bottom to top, are `block_1` (first convolution), `block_2` (second
        convolution), `block_3` (the dense feature layer) and `head`. The plan of each schedule (the head
        always trains, since it starts random):
    '''),
    code(r'''
        charts.stage_diagram(groups, "bottom-up").show()
        charts.stage_diagram(groups, "top-down").show()
    '''),
    md(r'''
        The preset `"bottom-up vs top-down"` turns one base config into the two variants, changing nothing
        else. Each stage lasts `stage_steps` steps; we also train a baseline with everything trainable
        from the start.
    '''),
    code(r'''
        STAGE_STEPS = 8
        staged = presets()["bottom-up vs top-down"](replace(base, stage_steps=STAGE_STEPS, name="nb03"))
        print([config.name for config in staged])
        hier_ids = run_all([base, *staged])
        hier_runs, hier_metrics = runs_and_metrics(hier_ids)
    '''),
    md(r'''
        The engine records a `trainable/<group>` value whenever a group is frozen or unfrozen;
        `timeline_figure` draws them (blue = trainable, dotted lines = epoch ends).
    '''),
    code(r'''
        for run_id, name in zip(hier_runs["id"], hier_runs["name"]):
            fig = charts.timeline_figure(hier_metrics[hier_metrics["run_id"] == run_id], groups=groups)
            fig.update_layout(title_text=f"Trainable layer groups: {name}")
            fig.show()
    '''),
    code(r'''
        charts.compare_figure(hier_metrics, hier_runs, key="val/accuracy", x="epoch").show()
    '''),
    md(r'''
        ## 2. Discriminative learning rates

        `discriminative=2.6` gives each group its own LR: the head keeps the base LR and each group below
        gets 2.6 times less than the one above it. With Adam, scaling the *gradients* would do nothing
        (Adam divides by their size), so the engine gives each group its own optimizer.
    '''),
    code(r'''
        multipliers = schedules.discriminative_multipliers(groups, 2.6)
        display(pd.DataFrame({"multiplier": multipliers, "learning rate": {g: base.lr * m for g, m in multipliers.items()}}).T)

        disc_ids = run_all([replace(base, discriminative=2.6, name="nb03 · discriminative 2.6")])
        disc_runs, disc_metrics = runs_and_metrics(disc_ids)
        charts.lr_figure(disc_metrics, log_y=True).show()  # what the optimizers really used, per step
    '''),
    md(r'''
        ## 3. Learning-rate schedules

        - **constant**: the same LR at every step, the baseline.
        - **plateau**: after each epoch, if the validation loss did not improve for `plateau_patience`
          epochs, multiply the LR by `plateau_factor`. It depends on the validation losses, so its curve
          is only known after training; below, an example sequence of losses shows the rule.
        - **warmup-cosine**: a linear rise over the first 10% of steps, then a cosine decay to zero.
        - **STLR** (slanted triangular): a short steep rise, then a long linear decay to 1/32 of the peak.

        These are pure functions of the step, so they can be plotted before anything trains. For this
        comparison we use six epochs and a deliberately large base LR (3e-3), large enough that a
        constant LR starts to overshoot towards the end.
    '''),
    code(r'''
        sched_base = replace(base, epochs=6, lr=3e-3)
        steps_per_epoch = plan.steps_per_epoch
        total = steps_per_epoch * sched_base.epochs
        example_val_losses = [0.9, 0.6, 0.55, 0.56, 0.54, 0.57]  # epoch 4 does not improve on epoch 3
        curves = {name: schedules.schedule_curve(name, base_lr=sched_base.lr, total_steps=total)
                  for name in ("constant", "warmup-cosine", "stlr")}
        curves["plateau (example losses)"] = schedules.plateau_curve(
            example_val_losses, base_lr=sched_base.lr, steps_per_epoch=steps_per_epoch,
            factor=sched_base.plateau_factor, patience=1)
        charts.schedule_figure(curves).show()
    '''),
    md(r'''
        Now the same four schedules in real runs (six epochs, same data, seed and base LR). The preset
        `"plateau vs constant LR"` gives the first two; we add the other two by hand.
    '''),
    code(r'''
        sched_configs = presets()["plateau vs constant LR"](replace(sched_base, plateau_patience=1, name="nb03"))
        sched_configs += [replace(sched_base, lr_schedule=name, name=f"nb03 · {name}") for name in ("warmup-cosine", "stlr")]
        sched_ids = run_all(sched_configs)
        sched_runs, sched_metrics = runs_and_metrics(sched_ids)
        charts.compare_figure(sched_metrics, sched_runs, key="train/lr").show()  # the LR each run really used
    '''),
    code(r'''
        charts.compare_figure(sched_metrics, sched_runs, key="train/loss", x="epoch").show()
        charts.compare_figure(sched_metrics, sched_runs, key="val/loss", x="epoch").show()
        display(metrics_table(sched_runs, sched_metrics)[["final_val_loss", "best_val_loss", "test_accuracy"]].round(4))
    '''),
    md(r'''
        ## 4. How much did each layer move?

        To look inside, we train in this thread with `prepare` + `train` (the two halves of what the run
        manager does) and pass a Keras callback that measures, after every epoch, the relative change of
        each group's weight matrices: $\lVert W_t - W_0 \rVert / \lVert W_0 \rVert$. For a LoRA layer,
        `layer.kernel` is $W + \Delta W$, so the same measure works for every method.
    '''),
    code(r'''
        def kernels(task_model):
            """Each group's weight matrices (layer.kernel: W + dW for LoRA layers) as one flat vector."""
            return {group: np.concatenate([keras.ops.convert_to_numpy(layer.kernel).ravel()
                                           for layer in layers if hasattr(layer, "kernel")])
                    for group, layers in task_model.groups.items()}


        class Movement(keras.callbacks.Callback):
            """After each epoch: ||W_t - W_0|| / ||W_0|| for every layer group."""

            def __init__(self, task_model):
                super().__init__()
                self.task_model, self.start, self.rows = task_model, kernels(task_model), []

            def on_epoch_end(self, epoch, logs=None):
                now = kernels(self.task_model)
                self.rows += [{"epoch": epoch + 1, "group": group,
                               "moved": float(np.linalg.norm(now[group] - w0) / np.linalg.norm(w0))}
                              for group, w0 in self.start.items()]


        def train_here(config):
            """prepare + train in this thread, recorded in the run store like any other run."""
            keras.utils.set_random_seed(config.seed)
            prepared = prepare(config)
            movement = Movement(prepared.task_model)
            run_id = manager.store.create_run(config.to_dict(), config.display_name(), status="running")
            started = time.time()
            summary = train(prepared, store=manager.store, run_id=run_id, extra_callbacks=[movement])
            manager.store.update_run(run_id, status="completed", final_metrics=summary, started=started,
                                     ended=time.time(), trainable_params=prepared.report.trainable,
                                     total_params=prepared.report.total)
            return pd.DataFrame(movement.rows).assign(configuration=config.name)


        moved = pd.concat([train_here(config) for config in [
            replace(base, name="full, one LR"),
            replace(base, discriminative=2.6, name="full, discriminative 2.6"),
            replace(base, hierarchical="top-down", stage_steps=STAGE_STEPS, name="full, top-down"),
            base.switch_method("lora", method_options={"rank": 4}, lr=None, name="LoRA r=4"),
        ]])
    '''),
    code(r'''
        def heatmap(frame, columns, title, x_title):
            z = frame.pivot(index="group", columns=columns, values="moved").loc[groups]
            z = z[list(dict.fromkeys(frame[columns]))]  # columns in the order we trained them
            fig = go.Figure(go.Heatmap(z=100 * z.to_numpy(), x=[str(c) for c in z.columns], y=list(z.index),
                                       colorscale="Blues", texttemplate="%{z:.1f}%", colorbar=dict(title="moved %"),
                                       hovertemplate="%{y} · %{x}: %{z:.2f}%<extra></extra>"))
            fig.update_layout(template="plotly_white", height=350, title_text=title)
            return fig.update_xaxes(title_text=x_title).update_yaxes(title_text="layer group (bottom → top)")


        heatmap(moved[moved["configuration"] == "full, one LR"], "epoch",
                "How far each group moved, epoch by epoch (full, one LR)", "after epoch").show()
        final = moved[moved["epoch"] == moved["epoch"].max()]
        heatmap(final, "configuration", "How far each group moved by the end of training: ||W_t - W_0|| / ||W_0||",
                "configuration").show()
    '''),
    md(r'''
        ## Questions

        1. In the bottom-up timeline, which group trains for the whole run and which only at the end? And
           in top-down? In the last heatmap, which configuration leaves `block_1` closest to its pretrained
           weights, and why?
        2. With a discriminative factor of 2.6 and four groups, how many times smaller is `block_1`'s LR
           than the head's? Compute it, then read it off the learning-rate chart.
        3. Warmup-cosine and STLR both start with small steps. Why could that help when the head is
           freshly initialised (random) but the layers below are pretrained? Did plateau ever lower the LR
           in its run (see the `train/lr` chart)? After which epoch, and what did the validation loss do
           next compared with the constant LR?
    '''),
]

# 04 · Compare runs ------------------------------------------------------------------------------------

NB04 = [
    md(r'''
        # 4 · Compare runs

        **What this notebook teaches**

        - where runs live: every run started in the app, with the CLI or from a notebook is one row of
          the **run store** (an SQLite file, `runs/workbench.db`), with its config, its status, its
          metrics per step and its final scores, so any of them can be analysed here;
        - how to compare runs honestly: overlay their curves, show **seed bands** (the same experiment
          with different seeds, drawn as a mean line and a min–max band), read the **config diff**
          (only what differs between runs), the **metrics table**, and the **efficiency** chart
          (quality against trainable parameters).

        If the store has fewer than six finished runs, the notebook first trains a small study (LoRA vs
        full fine-tuning, three seeds each, on mnist-cnn + digits: about half a minute) so there is always
        something to compare. Start runs in the app and rerun this notebook to see them here. (The lines
        TensorFlow prints on stderr when it starts are information, not errors.)
    '''),
    code(r'''
        import workbench  # first: quiet TensorFlow logging and offline mode, set before TensorFlow loads

        import os
        from dataclasses import replace
        from pathlib import Path

        import pandas as pd
        from IPython.display import display

        from workbench import charts
        from workbench.config import TrainConfig
        from workbench.presets import presets
        from workbench.run_tables import config_diff, metrics_table
        from workbench.runs import RunManager, default_runs_dir
    '''),
    RUN_STORE,
    md(r'''
        ## 1. What is in the store?

        `runs_frame()` gives one row per run: its name, status, model, data, method, seed, parameters,
        wall time, the full `config` and the final metrics.
    '''),
    code(r'''
        store = manager.store
        everything = store.runs_frame()
        print(len(everything), "runs in the store")
        if len(everything):
            display(everything[["name", "status", "model", "dataset", "method", "seed", "trainable_params", "wall_s"]].head(15))
    '''),
    md(r'''
        ## 2. Make sure there is something to compare

        The preset `"LoRA vs full"` turns one base config into a LoRA run and a full fine-tuning run, each
        with its method's default learning rate. We repeat it for three seeds. The seed decides which
        examples land in the training, validation and test splits, the head's initial weights and the
        batch order, so the spread between seeds shows how much of a difference is just chance.
    '''),
    code(r'''
        MIN_RUNS, SEEDS = 6, (0, 1, 2)
        finished = everything[everything["status"] == "completed"] if len(everything) else everything
        if len(finished) < MIN_RUNS:
            base = TrainConfig(model="mnist-cnn", data="digits", limit_per_class=20, epochs=4, batch_size=16,
                               export_model=False)
            # preset runs are named "lora · mnist-cnn/digits · s0": what varies, model/data, seed
            study = [config for seed in SEEDS for config in presets()["LoRA vs full"](replace(base, seed=seed))]
            started = []
            for config in study:  # one after another: each run is reproducible on its own
                run_id = manager.start(config)
                assert manager.wait(run_id) == "completed", store.get_run(run_id).error
                started.append(run_id)
            print("trained", len(started), "runs:", ", ".join(config.name for config in study))
        else:
            print(len(finished), "finished runs already: nothing to train")
    '''),
    md(r'''
        ## 3. Pick comparable runs

        Curves are only comparable on the same model and data. We take the most recent finished runs,
        keep the model + dataset pair that occurs most often among them, and show at most twelve.
        Change `selected` to pick others, e.g. `done[done["name"].str.contains("lora")]` or
        `done[done["id"].isin([...])]`.
    '''),
    code(r'''
        done = store.runs_frame()
        done = done[done["status"] == "completed"].sort_values("created", ascending=False)
        recent = done.head(30)
        model, dataset = recent.groupby(["model", "dataset"]).size().idxmax()
        selected = recent[(recent["model"] == model) & (recent["dataset"] == dataset)].head(12)
        selected = selected.sort_values(["method", "seed", "created"]).reset_index(drop=True)
        metrics = store.metrics(selected["id"].tolist())

        keys = set(metrics["key"])
        val_key = "val/accuracy" if "val/accuracy" in keys else "val/mae"
        test_metric = "test_accuracy" if "test_accuracy" in selected else "test_mae"
        print(f"{len(selected)} runs of {model} on {dataset}; comparing {val_key} and {test_metric}")
        display(selected[["name", "method", "seed", "trainable_params", "wall_s"]])
    '''),
    md(r'''
        ## 4. Overlay the curves

        First every run on its own (`band_by_seed=False`), then grouped by seed: runs whose configs differ
        only in their seed become one mean line with a min–max band. The x axis is the (fractional)
        epoch, so runs with different batch sizes still line up.
    '''),
    code(r'''
        fig = charts.compare_figure(metrics, selected, key="train/loss", x="epoch", band_by_seed=False)
        fig.update_layout(title_text="Training loss, every run")
        fig.show()

        fig = charts.compare_figure(metrics, selected, key="train/loss", x="epoch", band_by_seed=True)
        fig.update_layout(title_text="Training loss, seeds grouped (mean and min–max band)")
        fig.show()

        charts.compare_figure(metrics, selected, key=val_key, x="epoch", band_by_seed=True).show()
    '''),
    md(r'''
        ## 5. What differs, and what came out

        `config_diff` keeps only the config keys whose values differ between the selected runs: that is
        what can explain their curves. `metrics_table` has one row per run (final and best losses, test
        scores, trainable parameters, wall time); both are indexed by run name, so they join.
    '''),
    code(r'''
        diff = config_diff(selected)
        display(diff)

        table = metrics_table(selected, metrics)
        display(table.drop(columns=["run_id"]).round(4))
    '''),
    code(r'''
        summary = table.groupby("method")[[test_metric, "trainable_params", "wall_s"]].agg(["mean", "std", "count"])
        display(summary.round(4))
    '''),
    md(r'''
        The trade-off: the test score against the number of trainable parameters (log scale), one colour
        per method, bubble area = wall time.
    '''),
    code(r'''
        charts.efficiency_figure(table, metric=test_metric).show()
    '''),
    md(r'''
        ## Questions

        1. Compare the width of the seed bands with the gap between LoRA and full fine-tuning. Would one
           run of each have been enough to decide which is better? How many seeds would you want?
        2. Which config keys does the diff list? The two methods also trained with different learning
           rates (each its own default, `lr=None` in the config): why does the diff not show that, and where
           can you see the LR each run really used? (Hint: `store.metrics(ids, keys=["train/lr"])`.)
        3. Start a run in the app (Train page) on the same model and dataset, then rerun this notebook from
           the top. Where does your run appear, and what changes in the config diff?
    '''),
]

NOTEBOOKS: dict[str, list[Cell]] = {
    "01_losses_and_gradient_descent": NB01,
    "02_lora_and_parameter_sharing": NB02,
    "03_hierarchical_and_adaptive_lr": NB03,
    "04_compare_runs": NB04,
}


def build(stem: str) -> nbformat.NotebookNode:
    """One clean notebook: no outputs, no execution counts, stable cell ids."""
    cells = []
    for i, (kind, source) in enumerate(NOTEBOOKS[stem]):
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell.id = f"{stem[:2]}-{i:02d}"
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nbformat.validate(nb)
    return nb


def render(stem: str) -> str:
    return nbformat.writes(build(stem)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed notebooks are current")
    args = parser.parse_args(argv)
    stale = []
    for stem in NOTEBOOKS:
        path = OUT_DIR / f"{stem}.ipynb"
        text = render(stem)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            OUT_DIR.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print("wrote", path.relative_to(ROOT))
    if stale:
        print("stale notebooks (run scripts/make_notebooks.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
