"""`workbench runs ...`: inspect, steer, share and import recorded runs (the `runs` half of the CLI).

    workbench runs list | show ID | export ID --csv
    workbench runs steer ID --pause | --unpause | --lr 1e-4 | --lr-scale 0.1 [--group G] | --unfreeze [G]
                            | --freeze G | --stop-after-epoch
    workbench runs export ID [ID...] --zip FILE        a bundle another workbench imports
    workbench runs import FILE [FILE...]

Steering writes a request into the run store; the run (trained by this machine's app, a CLI, or a
notebook) applies it at its next step and records the step and what it did, which `runs show` lists.
Nothing here loads TensorFlow except `export --zip` (the model card).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from workbench.cli_support import quiet_engine_import, shown
from workbench.errors import UsageError, WorkbenchError, received

STEER_FLAGS = ("pause", "unpause", "lr", "lr_scale", "unfreeze", "freeze", "stop_after_epoch")


def add_parser(sub) -> None:
    runs = sub.add_parser("runs", help="inspect, steer, share and import recorded runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    p = runs_sub.add_parser("list")
    p.add_argument("--json", action="store_true")
    p = runs_sub.add_parser("show")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    p = runs_sub.add_parser("export", help="metrics as CSV on stdout (--csv), or runs as a zip bundle (--zip FILE)")
    p.add_argument("run_ids", nargs="+", metavar="run_id")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--csv", action="store_true", help="one run's metrics as CSV on stdout")
    how.add_argument("--zip", default=None, metavar="FILE", help="the runs (config, metrics, predictions, "
                     "interventions, trained weights, model card) as one .zip for `workbench runs import`")
    p.add_argument("--json", action="store_true")
    p = runs_sub.add_parser("import", help="add the runs of .zip bundles (marked as imported)")
    p.add_argument("files", nargs="+")
    p.add_argument("--json", action="store_true")
    p = runs_sub.add_parser("steer", help="intervene in a queued, running or paused run (applied at its next step)")
    p.add_argument("run_id")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--pause", action="store_true", help="wait between two steps, memory kept")
    what.add_argument("--unpause", action="store_true", help="continue a paused run")
    what.add_argument("--lr", type=float, default=None, help="set the learning rate now (the schedule goes on from it)")
    what.add_argument("--lr-scale", type=float, default=None, help="multiply the learning rate now, e.g. 0.1")
    what.add_argument("--unfreeze", nargs="?", const="", default=None, metavar="GROUP",
                      help="unfreeze GROUP now, or without GROUP the next stage / next frozen group")
    what.add_argument("--freeze", default=None, metavar="GROUP", help="stop training GROUP from now on")
    what.add_argument("--stop-after-epoch", action="store_true", help="end training when this epoch ends")
    p.add_argument("--group", default=None, help="with --lr / --lr-scale: only this layer group")
    p.add_argument("--json", action="store_true")


def cmd_runs(args, store_of, record_of) -> int:
    """`store_of(args)` opens the store; `record_of(store, id)` resolves a run id prefix (both from `cli`)."""
    from workbench.runs.store import default_runs_dir, store_exists

    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    if args.runs_command == "import":
        return _import(args, store_of(args))  # (may create the store: a fresh workbench)
    if not store_exists(runs_dir):  # reading never creates a store (a mistyped --runs-dir)
        if args.runs_command == "list":
            print("[]" if args.json else "", end="\n" if args.json else "")
            return 0
        first = getattr(args, "run_id", None) or args.run_ids[0]
        raise WorkbenchError(f"No run {first} in {runs_dir} (no run store there): pass the --runs-dir your "
                             f"runs were written to. {received(run_id=first)}")
    store = store_of(args)
    if args.runs_command == "list":
        records = store.list_runs()
        if args.json:
            print(json.dumps([r.to_dict() for r in records]))
        for r in records if not args.json else []:
            created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))
            print(f"{r.id}  {r.status:<11} {created}  {r.name}")
        return 0
    if args.runs_command == "steer":
        return _steer(args, store, record_of(store, args.run_id))
    if args.runs_command == "export":
        records = [record_of(store, run_id) for run_id in args.run_ids]
        if args.zip:
            return _export_zip(args, store, [r.id for r in records])
        if len(records) != 1:
            raise UsageError(f"--csv writes one run's metrics: give one run id (or use --zip for several). "
                             f"{received(run_ids=args.run_ids)}")
        store.metrics(records[0].id).to_csv(sys.stdout, index=False)
        return 0
    record = record_of(store, args.run_id)
    if args.json:
        from workbench.runs import interventions

        print(json.dumps({**record.to_dict(), "interventions": [
            i.to_dict() for i in interventions.history(store, record.id)]}))  # raw epoch seconds: for programs
        return 0
    for key, value in record.to_dict().items():
        print(f"{key:>16}: {shown(key, value)}")
    _print_interventions(store, record.id)
    return 0


def _steer(args, store, record) -> int:
    from workbench.runs import interventions

    if args.pause or args.unpause or args.stop_after_epoch:
        kind, values = ("pause" if args.pause else "unpause" if args.unpause else "stop_epoch"), {}
    elif args.lr is not None or args.lr_scale is not None:
        kind, values = "lr", {"set": args.lr, "scale": args.lr_scale, "group": args.group}
    elif args.unfreeze is not None:
        kind, values = "unfreeze", {"group": args.unfreeze or None}
    else:
        kind, values = "freeze", {"group": args.freeze}
    if args.group is not None and kind != "lr":
        raise UsageError(f"--group goes with --lr or --lr-scale (--unfreeze and --freeze take the group "
                         f"themselves). {received(group=args.group)}")
    item = interventions.steer(store, record.id, kind, values, source="cli")
    if args.json:
        print(json.dumps(item.to_dict()))
    else:
        print(f"requested #{item.seq} {item.label()} for run {record.id}: it applies at the run's next step "
              f"(`workbench runs show {record.id}` lists what it did)")
    return 0


def _export_zip(args, store, run_ids: list[str]) -> int:
    with quiet_engine_import():
        from workbench.runs.bundles import export_bundle

        summary = export_bundle(store, run_ids, Path(args.zip))
    if args.json:
        import dataclasses

        print(json.dumps(dataclasses.asdict(summary), default=str))
    else:
        print(summary.text())
    return 0


def _import(args, store) -> int:
    from workbench.runs.bundle_import import import_bundle

    reports = []
    for file in args.files:
        if not Path(file).is_file():
            raise WorkbenchError(f"No bundle at {file}: give the path of a .zip from `workbench runs export --zip`. "
                                 f"{received(file=file)}")
        reports.append(import_bundle(store, Path(file)))
    for report in reports:
        if args.json:
            print(json.dumps({"bundle": report.bundle, "imported": report.imported, "skipped": report.skipped}))
        else:
            print(report.text())
    return 0


def _print_interventions(store, run_id: str) -> None:
    from workbench.runs import interventions

    items = interventions.history(store, run_id)
    if items:
        print("   interventions:")
    for i in items:
        when = f"step {i.step}" if i.step is not None else "pending"
        print(f"                  #{i.seq} {i.label()} ({i.source}, {when}): {i.outcome or '—'}")


def add_resume_flag(train: argparse.ArgumentParser) -> None:
    train.add_argument("--resume", default=None, metavar="RUN_ID",
                       help="continue a stopped, interrupted or failed run from its last epoch checkpoint "
                            "(the same run; no other flags)")
