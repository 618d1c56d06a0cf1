"""`workbench`: the command-line contract (models, datasets, train, runs, sweep, sweeps, pretrain).

Exit codes: 0 completed, 1 the run failed, 2 bad input (one line on stderr naming the problem and
the fix, nothing before it, no traceback), 130 stopped with Ctrl-C. `--json` makes the last stdout
line a JSON summary. Train flags are generated from `TrainConfig`'s fields, so the CLI and the
config file never drift.

Flags, TOML files and config values are checked before TensorFlow is imported (a refusal takes a
fraction of a second, `runs list/show/export` never load it); the native libraries' start-up lines
(absl, oneDNN, CUDA stubs) are kept off stderr while the engine loads, see `quiet_engine_import`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench import cli_runs, cli_sweep
from workbench.cli_support import Parser, converter, describe, quiet_engine_import, seed_list
from workbench.config import FIELD_NAMES, TrainConfig, override
from workbench.errors import UsageError, WorkbenchError, received
from workbench.peft import option_owners

HELP = {
    "model": "registered model name (see `workbench models`) or a .keras file",
    "data": "registered dataset name (see `workbench datasets`) or a .csv file",
    "text_column": "CSV: the column holding the text", "feature_columns": "CSV: comma-separated numeric feature columns",
    "label_column": "CSV: the label/target column", "task": "CSV: classification or regression (inferred if unset)",
    "method": "PEFT method (its options: the flags below marked with its name)",
    "share": "parameter sharing across layers: off, tied (one LoRA pair for all) or vera (shared frozen bases)",
    "hierarchical": "staged unfreezing: off, bottom-up (source document) or top-down (ULMFiT)",
    "stage_epochs": "hierarchical stage length in epochs", "stage_steps": "hierarchical stage length in steps",
    "lr_schedule": "constant, plateau, warmup-cosine or stlr", "discriminative": "per-group LR factor (ULMFiT: 2.6)",
    "plateau_factor": "plateau: multiply the LR by this", "plateau_patience": "plateau: epochs without improvement",
    "min_lr": "plateau: lowest LR", "warmup_frac": "warmup-cosine: fraction of steps warming up",
    "epochs": "training epochs", "batch_size": "examples per batch", "lr": "learning rate (default: the method's)",
    "weight_decay": "AdamW weight decay", "optimizer": "adamw or sgd (plain θ ← θ − α∇L)", "seed": "random seed (same seed + config = same curve)",
    "max_seq_len": "text: tokens per example", "val_fraction": "validation share", "test_fraction": "test share",
    "limit_per_class": "few labels: at most N training examples per class", "max_rows": "subsample the dataset",
    "augment": "data augmentation (text: token dropout/swap; images: shift + noise)",
    "from_scratch": "same architecture, random weights (the transfer control)",
    "mixed_precision": "off, mixed_float16 or mixed_bfloat16", "jit_compile": "XLA: true, false or auto (GPU only)",
    "export_model": "save the merged .keras model",
    "prefix_cache": "run the frozen lowest layer groups once per example, not every step (inference mode: no dropout there)",
    "length_buckets": "text: group rows of similar length into batches and trim each to its longest row",
    "early_stopping": "end after N epochs without improvement of --early-stopping-metric (patience; off by default)",
    "early_stopping_metric": "val/loss, val/accuracy or val/mae", "restore_best": "early stopping: keep the best epoch's weights",
    "strategy": "tf.distribute: default, mirrored (local devices) or multiworker (TF_CONFIG)", "name": "a name for the run", "tags": "comma-separated tags",
}


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per run-level field, then one per method option (from the registry: a new method's
    options become flags without touching this file; an option several methods share is one flag)."""
    from workbench import fields, peft

    for name, (kind, _) in fields.kinds(TrainConfig).items():
        if kind is not dict:
            _add_flag(parser, name, kind, HELP.get(name, ""))
    owners = option_owners()
    for method in peft.methods():
        kinds = fields.kinds(method.options)
        for f in method.option_fields():
            if owners[f.name][0] == method.name:  # the first method that has it adds the flag
                _add_flag(parser, f.name, kinds[f.name][0], f"{f.metadata.get('help', '')} "
                                                           f"(method {', '.join(owners[f.name])})")


def _add_flag(parser: argparse.ArgumentParser, name: str, kind: type, help_text: str) -> None:
    kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
    if name == "jit_compile":
        kwargs["type"] = lambda s: {"true": True, "false": False}.get(s.lower(), s)
    elif kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif kind is list:
        kwargs["type"] = lambda s: [p.strip() for p in s.split(",") if p.strip()]
    elif kind in (int, float):
        kwargs["type"] = converter(kind, name, parser.prog)
    else:
        kwargs["type"] = kind
    parser.add_argument("--" + name.replace("_", "-"), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="workbench", description="PEFT Workbench: fine-tune pretrained models, offline.")
    parser.add_argument("--runs-dir", default=None, help="runs directory (default ./runs or WORKBENCH_RUNS_DIR)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("models", "list the model registry"), ("datasets", "list the dataset registry")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true")
    train = sub.add_parser("train", help="fine-tune a model on a dataset")
    train.add_argument("--config", default=None, help="a TOML file with the same options (flags override it)")
    train.add_argument("--json", action="store_true", help="last stdout line: JSON summary")
    train.add_argument("--from-run", default=None, help="start from an earlier run's config (flags override it)")
    train.add_argument("--runs-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    _add_train_flags(train)
    cli_runs.add_resume_flag(train)
    train.add_argument("--seeds", default=None, type=seed_list,
                       help="replicates: the same run once per seed, e.g. 0,1,2 (one seed group; instead of --seed)")
    cli_sweep.add_executor_flags(train)
    cli_runs.add_parser(sub)
    cli_sweep.add_parsers(sub, _add_train_flags)
    p = sub.add_parser("check-data", help="validate and clean a CSV without training (what was repaired or dropped)")
    p.add_argument("file")
    for flag in ("--text-column", "--label-column", "--task"):
        p.add_argument(flag, default=None)
    p.add_argument("--feature-columns", type=lambda s: [c.strip() for c in s.split(",") if c.strip()], default=None)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("study", help="run the results study and write docs/results.md")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default="docs")
    p.add_argument("--quick", action="store_true", help="a 4-variant, image-only smoke version")
    p.add_argument("--suites", default=None, help="comma-separated: image,text,forgetting,speech (default all); the "
                   "other suites' rows are kept from the stored results.csv")
    p = sub.add_parser("pretrain", help="reproduce a built-in pretrained model")
    p.add_argument("name", choices=["tiny-bert", "mnist-cnn", "spoken-digit-cnn"])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--source", default=None, help="mnist-cnn: the dataset to pretrain on (default mnist-5k)")
    p.add_argument("--out-dir", default=None, help="write the model here instead of sample_data/models")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except WorkbenchError as exc:
        print(f"error: {' '.join(str(exc).splitlines())}", file=sys.stderr)  # one line, whatever the message
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _engine():
    """`RunManager`, imported quietly (it brings Keras, TensorFlow and the model zoo).

    Listing the devices inside the quiet window too: the first device query is when TensorFlow
    tries CUDA ("failed call to cuInit" on a machine without a GPU), otherwise in mid-preflight.
    """
    with quiet_engine_import():
        from workbench.runs.manager import RunManager

        tf = sys.modules.get("tensorflow")
        if tf is not None and hasattr(tf, "config"):
            tf.config.list_physical_devices()
    return RunManager


def _manager(args, max_concurrent: int = 1):
    """The process-wide `RunManager` on `--executor` (thread by default) and `--ray-address`."""
    return cli_sweep.manager_for(args, _engine(), max_concurrent)


def _store(args):
    from workbench.runs.store import RunStore

    return RunStore(args.runs_dir)


def _record(store, run_id: str):
    """The stored run a (prefix of a) run id names, or a refusal saying where it looked."""
    run_id = store.resolve_id(run_id)
    record = store.get_run(run_id)
    if record is None:
        raise WorkbenchError(f"No run {run_id} in {store.runs_dir}: see `workbench runs list` for the runs there "
                             f"(or pass --runs-dir). {received(run_id=run_id)}")
    return record


def cmd_models(args) -> int:
    with quiet_engine_import():
        from workbench.models import list_models

    cards = [c.to_dict() for c in list_models()]
    if args.json:
        print(json.dumps(cards))
    else:
        for c in cards:
            print(f"{c['name']:<11} {c['modality']:<8} {c['params']:>11,} params  {c['title']}")
    return 0


def cmd_datasets(args) -> int:
    from workbench.data import list_datasets

    cards = [c.to_dict() for c in list_datasets()]
    if args.json:
        print(json.dumps(cards))
    else:
        for c in cards:
            print(f"{c['name']:<22} {c['modality']:<8} {c['task']:<15} {c['rows']:>6} rows  {c['license']}")
    return 0


def cmd_train(args) -> int:
    if args.seeds is not None and args.seed is not None:
        raise UsageError(f"Give --seed or --seeds, not both: --seeds sets each replicate's seed. "
                         f"{received(seed=args.seed, seeds=','.join(map(str, args.seeds)))}")
    if args.resume is not None:
        return _resume(args)
    config = _train_config(args)  # every flag and file checked before the engine loads
    if args.seeds is not None:
        return _train_group(args, config)
    manager = _manager(args)
    run_id = manager.start(config)
    print(f"run {run_id}: {config.display_name()}", file=sys.stderr)
    return _finish(args, manager, run_id)


def _resume(args) -> int:
    """`train --resume ID`: the run continues from its checkpoint, as the same run (its config as stored)."""
    given = [n for n in (*FIELD_NAMES, *option_owners(), "seeds", "config", "from_run")
             if getattr(args, n, None) not in (None, False)]
    if given:
        raise UsageError(f"--resume continues a run as it was configured: drop --{given[0].replace('_', '-')} "
                         f"(use --from-run ID with changes for a new run). {received(resume=args.resume)}")
    run_id = _record(_store(args), args.resume).id
    manager = _manager(args)
    manager.resume(run_id)
    print(f"run {run_id}: resumed from its checkpoint", file=sys.stderr)
    return _finish(args, manager, run_id)


def _finish(args, manager, run_id: str) -> int:
    interrupted = False
    try:
        _follow(manager, run_id)
    except KeyboardInterrupt:
        interrupted = True
        manager.stop(run_id)
        manager.wait(run_id)
    summary = _run_summary(manager, run_id)
    if args.json:
        print(json.dumps(summary))
    else:
        print(describe(summary))
    if interrupted:
        return 130
    return 0 if summary["status"] == "completed" and summary["recorded"] else 1


def _run_summary(manager, run_id: str) -> dict[str, Any]:
    """A run's JSON summary, with its failure (or an unrecorded end) said on stderr."""
    record = manager.record(run_id)  # the store's record, or the real end when the store could not take it
    unrecorded = " (the run store could not record it)" if record.unrecorded else ""
    if record.status == "failed":
        print(f"run {run_id} failed at step {record.error_step}: {record.error}{unrecorded}", file=sys.stderr)
    elif record.unrecorded:
        print(f"run {run_id} {record.status}{unrecorded}: free space under the runs directory", file=sys.stderr)
    return {"run_id": run_id, "status": record.status, **record.final_metrics, "name": record.name,
            "seed": record.config.get("seed"), "trainable_params": record.trainable_params,
            "total_params": record.total_params, "wall_s": round(record.wall_s or 0.0, 3), "device": record.device,
            "error": record.error, "recorded": not record.unrecorded}


def _train_group(args, config: TrainConfig) -> int:
    """`--seeds 0,1,2`: one run per seed, queued in order; a line per run, then the group's mean ± std."""
    from workbench.seed_groups import group_report, replicates, run_line

    replicates(config, args.seeds)  # a seed out of range is refused before the engine loads
    manager = _manager(args)
    run_ids = manager.start_group(config, args.seeds)
    runs, interrupted = [], False
    try:
        for run_id in run_ids:
            print(f"run {run_id}: {manager.record(run_id).name}", file=sys.stderr)
            _follow(manager, run_id)
            runs.append(_run_summary(manager, run_id))
            print(run_line(runs[-1]))
    except KeyboardInterrupt:
        interrupted = True
        for run_id in run_ids:  # the one training ends after its batch, the queued ones never start
            manager.stop(run_id)
        for run_id in run_ids[len(runs):]:
            manager.wait(run_id)
            runs.append(_run_summary(manager, run_id))
            print(run_line(runs[-1]))
    group = group_report(runs, interrupted)
    print(json.dumps(group) if args.json else group["text"])
    if interrupted:
        return 130
    return 0 if group["status"] == "completed" and all(r["recorded"] for r in runs) else 1


def _train_config(args) -> TrainConfig:
    flags = {name: getattr(args, name) for name in (*FIELD_NAMES, *option_owners()) if hasattr(args, name)}
    given = {k: v for k, v in flags.items() if v is not None}
    if args.from_run and args.config:
        raise UsageError(f"Give --from-run or --config, not both: put the changes in flags. "
                         f"{received(from_run=args.from_run, config=args.config)}")
    if args.from_run:
        return TrainConfig.from_dict(override(_record(_store(args), args.from_run).config, given))
    if args.config:
        return TrainConfig.from_toml(args.config, **flags)
    return TrainConfig.from_dict(given)


def _follow(manager, run_id: str) -> None:
    """A progress line on stderr until the run ends: a live bar on a terminal, epoch lines otherwise."""
    tty = sys.stderr.isatty()
    last_epoch = -1
    while manager.wait(run_id, timeout=0.25) in ("queued", "running", "paused"):
        snap = manager.snapshot(run_id) or {}
        if not snap.get("total_steps"):
            continue
        step, total = snap["step"], snap["total_steps"]
        loss = f"{snap['loss']:.4f}" if snap.get("loss") is not None else "-"
        eta = f"{snap['eta_s']:.0f}s" if snap.get("eta_s") is not None else "-"
        if tty:
            done = int(30 * step / total)
            print(f"\r[{'#' * done}{'.' * (30 - done)}] {step}/{total} epoch {snap['epoch'] + 1}/{snap['epochs']} "
                  f"loss {loss} eta {eta} ", end="", file=sys.stderr, flush=True)
        elif snap["epoch"] != last_epoch:
            last_epoch = snap["epoch"]
            print(f"epoch {last_epoch + 1}/{snap['epochs']} step {step}/{total} loss {loss}", file=sys.stderr)
    if tty:
        print(file=sys.stderr)




def cmd_runs(args) -> int:
    return cli_runs.cmd_runs(args, _store, _record)


def cmd_sweep(args) -> int:
    return cli_sweep.cmd_sweep(args, _train_config, _manager)


def cmd_sweeps(args) -> int:
    return cli_sweep.cmd_sweeps(args, _store, _manager)


def cmd_pretrain(args) -> int:

    options: dict[str, Any] = {"epochs": args.epochs} if args.epochs else {}
    if args.source:
        if args.name != "mnist-cnn":
            raise UsageError(f"--source applies to mnist-cnn only: drop it for {args.name}. {received(source=args.source)}")
        options["source"] = args.source
    if args.out_dir:
        options["out_dir"] = Path(args.out_dir)
    with quiet_engine_import():
        from workbench.models.pretrain import PRETRAINERS
    print(json.dumps(PRETRAINERS[args.name](**options)))
    return 0


def cmd_check_data(args) -> int:
    from workbench.data import load_csv
    from workbench.data.checks import split_warnings
    from workbench.data.split import split_dataset

    ds = load_csv(args.file, text_column=args.text_column, feature_columns=args.feature_columns,
                  label_column=args.label_column, task=args.task)
    # The split `train` would make with its defaults: data it would refuse is refused here too.
    split = split_dataset(ds)
    sizes = {"train": len(split.y_train), "val": len(split.y_val), "test": len(split.y_test)}
    notes = split_warnings(sizes, ds.card.task, ds.num_classes)
    info = {"rows": len(ds.y), "task": ds.card.task, "classes": list(ds.card.class_names or []),
            "report": ds.report.summary(), "repaired": ds.report.repaired, "split": sizes, "notes": notes}
    text = f"{ds.card.task}, {len(ds.y)} rows: {ds.report.summary()}"
    print(json.dumps(info) if args.json else "\n".join([text, *(f"note: {n}" for n in notes)]))
    return 0


def cmd_study(args) -> int:
    from workbench.runs.store import default_runs_dir

    with quiet_engine_import():
        from workbench.study import run_study

    runs_dir = args.runs_dir or default_runs_dir()
    suites = [s.strip() for s in args.suites.split(",") if s.strip()] if args.suites else None
    frame = run_study(runs_dir, args.out, seeds=args.seeds, quick=args.quick, suites=suites,
                      log=lambda line: print(line, file=sys.stderr))
    print(f"wrote {args.out}/results.md ({len(frame)} runs)")
    return 0 if (frame.status == "completed").all() else 1


COMMANDS = {"models": cmd_models, "datasets": cmd_datasets, "train": cmd_train, "runs": cmd_runs,
            "check-data": cmd_check_data, "study": cmd_study, "pretrain": cmd_pretrain, "sweep": cmd_sweep,
            "sweeps": cmd_sweeps}

if __name__ == "__main__":
    sys.exit(main())
