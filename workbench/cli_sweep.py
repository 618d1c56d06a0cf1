"""`workbench sweep` (run a sweep, follow it, print its table) and `workbench sweeps list|show|stop|best`.

Kept apart from `workbench.cli` so the command reads on its own; `cli` registers it. The base
configuration comes from the same flags, TOML file or earlier run as `workbench train`; every flag,
value and trial configuration is checked before TensorFlow loads, so a refusal is one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from workbench.cli_support import seed_list
from workbench.errors import UsageError, WorkbenchError, received

EXECUTORS = ("thread", "process", "ray")


def add_executor_flags(parser: argparse.ArgumentParser) -> None:
    """`--executor` and `--ray-address` (train, sweep, sweeps best): where the runs train."""
    parser.add_argument("--executor", choices=EXECUTORS, default=None,
                        help="where runs train: thread (this process, default), process (engine workers) or ray")
    parser.add_argument("--ray-address", default=None, help="--executor ray: the cluster to join (default: local)")


def manager_for(args: argparse.Namespace, manager_class: Any, max_concurrent: int = 1) -> Any:
    """The runs directory's process-wide `RunManager` (`RunManager.get`) on `--executor` (thread by
    default: the CLI trains in its own process) and, for Ray, `--ray-address`."""
    executor = getattr(args, "executor", None) or "thread"
    address = getattr(args, "ray_address", None)
    if address and executor != "ray":
        raise UsageError(f"--ray-address applies to --executor ray: add --executor ray or drop it. "
                         f"{received(ray_address=address, executor=executor)}")
    options: dict[str, Any] = {"executor": executor, "max_concurrent": max_concurrent}
    if address:
        options["ray_address"] = address
    try:
        return manager_class.get(args.runs_dir, **options)
    except (TypeError, ValueError) as exc:  # an executor this install's RunManager does not offer
        raise UsageError(f"--executor {executor} cannot start here ({' '.join(str(exc).split())}): use --executor "
                         f"thread. {received(executor=executor)}") from None


def add_parsers(sub: Any, add_train_flags: Any) -> None:
    p = sub.add_parser("sweep", help="train many runs over chosen settings: grid or random search, optional halving")
    p.add_argument("--config", default=None, help="a TOML file with the base configuration (flags override it)")
    p.add_argument("--from-run", default=None, help="start from an earlier run's config (flags override it)")
    p.add_argument("--json", action="store_true", help="last stdout line: JSON summary")
    p.add_argument("--runs-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    add_train_flags(p)
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="values of a setting, e.g. lr=1e-3,1e-2 or rank=4,8 (repeatable)")
    p.add_argument("--range", action="append", default=[], metavar="NAME=LOW:HIGH[:log]",
                   help="random search: a number range, e.g. lr=1e-4:1e-1:log (repeatable)")
    p.add_argument("--search", choices=("grid", "random"), default=None,
                   help="grid (every combination) or random (--budget draws); default: random with --range")
    p.add_argument("--budget", type=_whole("--budget"), default=None, help="most runs (grid: all of it by default)")
    p.add_argument("--metric", default="val_accuracy", help="the final metric to judge trials on: val_accuracy "
                   "(default), val_loss, best_val_loss, val_mae, test_accuracy, test_loss, test_mae or train_loss")
    p.add_argument("--direction", choices=("maximize", "minimize"), default=None,
                   help="default: minimize losses and errors, maximize the rest")
    p.add_argument("--halving", action="store_true", help="successive halving: stop weak trials early (per epoch)")
    p.add_argument("--parallel", type=_whole("--parallel"), default=None, help="trials at once (default: what the executor trains at once; thread: 1)")
    p.add_argument("--sweep-seed", type=_whole("--sweep-seed"), default=0, help="the random search's seed")
    p.add_argument("--sweep-name", default=None, help="a name for the sweep")
    add_executor_flags(p)

    sweeps = sub.add_parser("sweeps", help="list, show and stop sweeps; start a sweep's best with more seeds")
    sweeps_sub = sweeps.add_subparsers(dest="sweeps_command", required=True)
    p = sweeps_sub.add_parser("list", help="the sweeps, newest first")
    p.add_argument("--json", action="store_true")
    p = sweeps_sub.add_parser("show", help="a sweep's trials, best first")
    p.add_argument("sweep_id")
    p.add_argument("--json", action="store_true")
    p = sweeps_sub.add_parser("stop", help="no new trials; stop the running ones")
    p.add_argument("sweep_id")
    p = sweeps_sub.add_parser("best", help="start the sweep's best configuration once per seed")
    p.add_argument("sweep_id")
    p.add_argument("--seeds", required=True, type=seed_list, help="e.g. 1,2,3")
    p.add_argument("--json", action="store_true")
    add_executor_flags(p)


def _whole(flag: str) -> Any:
    def convert(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a whole number, e.g. {flag} 4. "
                                             f"{received(**{flag.lstrip('-').replace('-', '_'): text})}") from None
    return convert


# -- reading --grid and --range ------------------------------------------------------------------
def _split(flag: str, text: str) -> tuple[str, str]:
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise UsageError(f"{flag} takes NAME=VALUES, e.g. {flag} lr={'1e-4:1e-2:log' if flag == '--range' else '1e-3,1e-2'}. "
                         f"{received(**{flag.lstrip('-'): text})}")
    return name.strip().replace("-", "_"), rest.strip()


def _value(name: str, text: str) -> Any:
    """One value of a setting, typed as the setting is (`sweeps.values`; lr=default or none: the method's default)."""
    from workbench.sweeps.values import value_of

    try:
        return value_of(name, text)
    except WorkbenchError as exc:
        raise UsageError(str(exc)) from None  # (exit 2, as for any flag argparse cannot read)


def sweep_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for text in args.grid:
        name, rest = _split("--grid", text)
        params[name] = [_value(name, v) for v in rest.split(",") if v.strip()]
    for text in args.range:
        name, rest = _split("--range", text)
        parts = rest.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            raise UsageError(f"--range takes NAME=LOW:HIGH or NAME=LOW:HIGH:log, e.g. lr=1e-4:1e-2:log. "
                             f"{received(range=text)}")
        params[name] = {"low": _value(name, parts[0]), "high": _value(name, parts[1]), "log": len(parts) == 3}
    if not params:
        raise UsageError("Give the settings to sweep: --grid NAME=V1,V2 (e.g. --grid lr=1e-3,1e-2) or --range "
                         "NAME=LOW:HIGH[:log] with --search random. Received: nothing to sweep")
    if len(params) < len(args.grid) + len(args.range):
        raise UsageError(f"Each setting may be swept once: merge its --grid/--range flags. {received(grid=args.grid, range=args.range)}")
    return params


def build_spec(args: argparse.Namespace, base: Any) -> Any:
    from workbench.sweeps import SweepSpec

    search = args.search or ("random" if args.range else "grid")
    return SweepSpec(base=base.to_dict(), params=sweep_params(args), search=search, budget=args.budget,
                     metric=args.metric, direction=args.direction, halving=args.halving, parallel=args.parallel,
                     seed=args.sweep_seed, name=args.sweep_name)


# -- commands -----------------------------------------------------------------------------------
def cmd_sweep(args: argparse.Namespace, train_config: Any, manager_of: Any) -> int:
    from workbench.sweeps import best_trial, get_sweep, start_sweep, stop_sweep, sweep_frame, wait_sweep

    spec = build_spec(args, train_config(args))
    spec.trial_configs()  # every trial's configuration, before the engine loads
    manager = manager_of(args, max_concurrent=spec.parallel or 1)
    names = ", ".join(spec.params)
    print(f"sweep: {spec.search} over {names}, {spec.budget} run{'s' if spec.budget != 1 else ''}, judged on {spec.metric} "
          f"({spec.resolved_direction()}){', halving' if spec.halving else ''}", file=sys.stderr)
    interrupted = False

    def line(row: Any) -> None:
        print(trial_line(row, spec.metric), flush=True)

    sweep_id = start_sweep(manager, spec, on_trial=line)
    print(f"sweep {sweep_id} started", file=sys.stderr)
    try:
        wait_sweep(sweep_id)
    except KeyboardInterrupt:  # no new trials, the running ones stopped; the table still prints
        interrupted = True
        stop_sweep(manager, sweep_id)
        wait_sweep(sweep_id)
    record = get_sweep(manager.store, sweep_id)
    frame = sweep_frame(manager.store, sweep_id)
    best = best_trial(manager.store, sweep_id)
    if args.json:
        print(json.dumps(summary(record, frame, best)))
    else:
        print(f"\nsweep {sweep_id}: {record.status}")
        print(table(frame))
        if best is not None:
            print(f"best: run {best.run_id} ({spec.metric} {best.value:.4f}): {_params(best.params)}")
            print(f"more seeds: workbench sweeps best {sweep_id} --seeds 1,2,3")
    if interrupted:
        return 130
    return 0 if record.status == "completed" and best is not None else 1


def cmd_sweeps(args: argparse.Namespace, store_of: Any, manager_of: Any) -> int:
    from workbench.runs.store import default_runs_dir, store_exists
    from workbench.sweeps import best_trial, get_sweep, list_sweeps, stop_sweep, sweep_frame
    from workbench.sweeps.records import resolve_id

    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    if not store_exists(runs_dir):  # reading never creates a store (a mistyped --runs-dir)
        if args.sweeps_command == "list":
            print("[]" if args.json else "", end="\n" if args.json else "")
            return 0
        raise WorkbenchError(f"No sweep {args.sweep_id} in {runs_dir} (no run store there): pass the --runs-dir "
                             f"its runs were written to. {received(sweep_id=args.sweep_id)}")
    store = store_of(args)
    if args.sweeps_command == "list":
        sweeps = list_sweeps(store)
        if args.json:
            print(json.dumps([s.to_dict() for s in sweeps]))
        for s in [] if args.json else sweeps:
            spec = s.spec
            print(f"{s.id}  {s.status:<11} {spec.get('search')} {','.join(spec.get('params', {}))} "
                  f"({spec.get('budget')} runs, {spec.get('metric')})  best {s.best_run_id or '-'}"
                  f"{'  ' + s.name if s.name else ''}")
        return 0
    sweep_id = resolve_id(store, args.sweep_id)
    if args.sweeps_command == "show":
        record, frame = get_sweep(store, sweep_id), sweep_frame(store, sweep_id)
        if args.json:
            print(json.dumps(summary(record, frame, best_trial(store, sweep_id))))
        else:
            print(f"sweep {sweep_id}: {record.status}{' · ' + record.error if record.error else ''}")
            print(table(frame))
        return 0
    if args.sweeps_command == "stop":
        stop_sweep(_StoreOnly(store), sweep_id)  # the process driving it stops its runs
        print(f"sweep {sweep_id}: stop requested")
        return 0
    return _best(args, manager_of, sweep_id)


def _best(args: argparse.Namespace, manager_of: Any, sweep_id: str) -> int:
    """`sweeps best ID --seeds 1,2,3`: the best configuration once per seed, followed as `train --seeds` is."""
    from workbench import cli
    from workbench.seed_groups import group_report, run_line
    from workbench.sweeps import best_config, start_best_with_seeds

    manager = manager_of(args)
    best_config(manager.store, sweep_id)  # no complete trial: refused before anything starts
    run_ids = start_best_with_seeds(manager, sweep_id, args.seeds)
    runs = []
    try:
        for run_id in run_ids:
            cli._follow(manager, run_id)
            runs.append(cli._run_summary(manager, run_id))
            print(run_line(runs[-1]))
    except KeyboardInterrupt:
        for run_id in run_ids:
            manager.stop(run_id)
        return 130
    group = group_report(runs)
    print(json.dumps(group) if args.json else group["text"])
    return 0 if group["status"] == "completed" else 1


class _StoreOnly:
    """What `stop_sweep` needs to stop a sweep another process drives, without loading the engine: the
    store (the stop request goes there) and a `stop` that owns no run here."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def stop(self, run_id: str) -> bool:
        return False


# -- output ---------------------------------------------------------------------------------------
def _params(values: dict[str, Any]) -> str:
    return " ".join(f"{k.removeprefix('method_options.')}={_fmt(v)}" for k, v in values.items())


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trial_line(row: Any, metric: str) -> str:
    """'trial 2 pruned · val_accuracy 0.1000 · lr=1 · 1 epoch · run 2026…' (one per trial as it ends)."""
    value = f"{metric} {row.value:.4f}" if row.value is not None and math.isfinite(row.value) else f"no {metric}"
    epochs = f"{row.epochs_done or 0} epoch{'' if row.epochs_done == 1 else 's'}"
    run = f"run {row.run_id}" if row.run_id else "not started"
    error = f" · {' '.join(str(row.error).split())}" if row.error and row.state == "failed" else ""
    return f"trial {row.trial} {row.state} · {value} · {_params(row.params)} · {epochs} · {run}{error}"


def table(frame: Any) -> str:
    if frame.empty:
        return "(no trials)"
    shown = frame.copy().astype({"status": object})
    for column in shown.columns[4:-2]:  # the swept settings: 0.01, not 1.000000e-02
        shown[column] = [_fmt(v) for v in shown[column]]
    shown["value"] = [f"{v:.4f}" if math.isfinite(v) else "-" for v in shown["value"]]
    return shown.fillna("-").to_string(index=False)


def summary(record: Any, frame: Any, best: Any) -> dict[str, Any]:
    rows = json.loads(frame.to_json(orient="records"))
    return {"sweep_id": record.id, "status": record.status, "error": record.error, "metric": record.spec.get("metric"),
            "best_run_id": best.run_id if best else None, "best_value": best.value if best else None, "trials": rows}
