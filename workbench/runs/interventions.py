"""Interventions: what a person asked a run to do while it trains, kept in the run store.

Why the store and not a pipe: a run is steered from the Runs page (the app, whose engine worker trains
it), from `workbench runs steer` (another process) and from the Python API. The store is the one thing
they all share, so a request is a row; the training loop's `Steering` callback (`train.steering`) reads
the pending rows a few times a second, applies each at a step boundary and writes back the step and
what it did ("LR 0.001 → 0.0001 for every group"), or why it refused. Every chart marks those steps,
and Compare lists them beside the config, because an intervention is part of what the run was.

Kinds (`KINDS`), with their arguments:
- `pause` / `unpause` (the run waits between two steps, memory kept; see `train.steering.PAUSE_LIMIT_S`);
- `lr`: {"set": 1e-4} or {"scale": 0.1}, optionally {"group": "block_2"};
- `unfreeze`: {"group": name} or {} (the next stage of a staged run, or the next frozen group);
- `freeze`: {"group": name};
- `stop_epoch`: end training at the end of the current epoch (evaluated and explained as a full run);
- recorded by the engine itself: `resume` (continued from a checkpoint) and `early_stop`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError, received

if TYPE_CHECKING:
    from workbench.runs.store import RunStore

REQUESTABLE = ("pause", "unpause", "lr", "unfreeze", "freeze", "stop_epoch")
KINDS = (*REQUESTABLE, "resume", "early_stop")
COLUMNS = "run_id, seq, requested, kind, args, source, step, applied, outcome"


@dataclass(frozen=True)
class Intervention:
    run_id: str
    seq: int
    requested: float
    kind: str
    args: dict[str, Any]
    source: str | None = None  # "app", "cli", "api", "engine"
    step: int | None = None  # the step it took effect after (None: not applied yet)
    applied: float | None = None
    outcome: str | None = None  # what it did, or "refused: why"

    @property
    def refused(self) -> bool:
        return bool(self.outcome and self.outcome.startswith("refused"))

    def label(self) -> str:
        """Short text for a chart marker: 'LR ×0.1', 'unfreeze block_2', 'pause'."""
        a = self.args
        if self.kind == "lr":
            what = f"×{a['scale']:g}" if "scale" in a else f"= {a['set']:g}"
            return f"LR {what}" + (f" ({a['group']})" if a.get("group") else "")
        if self.kind in ("unfreeze", "freeze"):
            return f"{self.kind} {a.get('group') or 'next'}"
        return {"stop_epoch": "stop after epoch", "early_stop": "early stop",
                "resume": f"resumed from step {a.get('from_step')}"}.get(self.kind, self.kind)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_request(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """The request's arguments, checked before they reach a run (bad input is refused here, one line)."""
    if kind not in REQUESTABLE:
        raise WorkbenchError(f"Unknown intervention {kind!r}: use one of {', '.join(REQUESTABLE)}. {received(kind=kind)}")
    args = {k: v for k, v in args.items() if v is not None}
    if kind == "lr":
        given = [k for k in ("set", "scale") if k in args]
        if len(given) != 1:
            raise WorkbenchError(f"An LR intervention takes exactly one of set (a new LR) or scale (a factor), e.g. "
                                 f"--lr-scale 0.1. {received(**{k: args.get(k) for k in ('set', 'scale')})}")
        value = args[given[0]]
        if not isinstance(value, int | float) or not 0 < float(value) < (1.0 if given[0] == "set" else 100.0):
            raise WorkbenchError(f"The LR {given[0]} must be a number in (0, {1 if given[0] == 'set' else 100}): e.g. "
                                 f"set 1e-4 or scale 0.1. {received(**{given[0]: value})}")
        args[given[0]] = float(value)
    if kind == "freeze" and not args.get("group"):
        raise WorkbenchError(f"Freeze needs the layer group to freeze, e.g. --freeze block_1. {received(group=None)}")
    unknown = set(args) - {"set", "scale", "group"}
    if unknown:
        raise WorkbenchError(f"Unknown intervention argument {sorted(unknown)[0]!r}: use set, scale or group. "
                             f"{received(args=args)}")
    return args


def request(store: RunStore, run_id: str, kind: str, args: dict[str, Any] | None = None,
            source: str = "api") -> Intervention:
    """Queue an intervention for a run (checked first); the run applies it at its next step."""
    args = check_request(kind, dict(args or {}))
    return add(store, run_id, kind, args, source)


def steer(store: RunStore, run_id: str, kind: str, args: dict[str, Any] | None = None,
          source: str = "api") -> Intervention:
    """`request`, for a run that can still take one: queued, running or paused (the request itself is
    checked first: a mistyped value is refused as such whatever the run's state)."""
    from workbench.runs.store import ACTIVE, RESUMABLE

    args = check_request(kind, dict(args or {}))
    record = store.get_run(run_id)
    if record is None:
        raise WorkbenchError(f"No run {run_id} here: see `workbench runs list`. {received(run_id=run_id)}")
    if record.status not in ACTIVE:
        hint = " (Resume it first)" if record.status in RESUMABLE else ""
        raise WorkbenchError(f"Run {run_id} is {record.status}: only a queued, running or paused run can be "
                             f"steered{hint}. {received(status=record.status)}")
    if kind == "unpause" and record.status != "paused" and not any(i.kind == "pause" for i in pending(store, run_id)):
        raise WorkbenchError(f"Run {run_id} is not paused: nothing to continue. {received(status=record.status)}")
    return add(store, run_id, kind, args, source)


def paused_since(store: RunStore, run_id: str) -> float | None:
    """When the run's current pause began (the last applied pause), or None."""
    row = store._conn().execute("SELECT MAX(applied) FROM interventions WHERE run_id = ? AND kind = 'pause'",
                                (store.check_id(run_id),)).fetchone()
    return row[0] if row else None


def add(store: RunStore, run_id: str, kind: str, args: dict[str, Any], source: str, *, step: int | None = None,
        outcome: str | None = None) -> Intervention:
    """Write one row (the engine's own records come in applied: a `step` and an `outcome`)."""
    now = time.time()
    with store._write() as conn:
        (last,) = conn.execute("SELECT MAX(seq) FROM interventions WHERE run_id = ?", (store.check_id(run_id),)).fetchone()
        seq = (last or 0) + 1
        applied = now if step is not None else None
        conn.execute(f"INSERT INTO interventions ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (run_id, seq, now, kind, json.dumps(args), source, step, applied, outcome))
    return Intervention(run_id, seq, now, kind, args, source, step, applied, outcome)


def pending(store: RunStore, run_id: str) -> list[Intervention]:
    return _select(store, "WHERE run_id = ? AND applied IS NULL ORDER BY seq", (store.check_id(run_id),))


def applied(store: RunStore, run_id: str, seq: int, step: int, outcome: str) -> None:
    with store._write() as conn:
        conn.execute("UPDATE interventions SET step = ?, applied = ?, outcome = ? WHERE run_id = ? AND seq = ?",
                     (int(step), time.time(), outcome, store.check_id(run_id), seq))


def history(store: RunStore, run_ids: str | list[str]) -> list[Intervention]:
    """Every intervention of the runs, in order (applied or not)."""
    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    return _select(store, f"WHERE run_id IN ({marks}) ORDER BY run_id, seq", tuple(store.check_id(i) for i in ids))


def replay_after(store: RunStore, run_id: str, step: int) -> list[Intervention]:
    """A run resumed from its checkpoint at `step` lost the steps after it, but not what a person asked
    for then: interventions applied after the checkpoint are pending again (applied anew at the resumed
    step). That includes those recorded *at* `step`: a request applies when a batch begins and is
    recorded with the steps done so far, so one recorded at step S came after the epoch-end checkpoint
    of step S. "Stop after this epoch" is replayed too (the resumed run retrains that epoch, then ends).
    A pause or an early stop belongs to the lost steps and is not replayed."""
    with store._write() as conn:
        conn.execute("UPDATE interventions SET step = NULL, applied = NULL, outcome = NULL WHERE run_id = ? "
                     "AND step >= ? AND kind IN ('lr', 'unfreeze', 'freeze', 'stop_epoch')", (store.check_id(run_id), int(step)))
        conn.execute("DELETE FROM interventions WHERE run_id = ? AND step >= ? AND kind IN "
                     "('pause', 'unpause', 'early_stop')", (run_id, int(step)))
        conn.execute("DELETE FROM interventions WHERE run_id = ? AND applied IS NULL AND kind IN ('pause', 'unpause')",
                     (run_id,))
    return pending(store, run_id)


def insert_rows(store: RunStore, rows: list[dict[str, Any]]) -> None:
    """Rows as `Intervention.to_dict` wrote them (a bundle's import): same run id, same order."""
    with store._write() as conn:
        conn.executemany(f"INSERT INTO interventions ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (store.check_id(r["run_id"]), int(r["seq"]), float(r["requested"]), str(r["kind"]), json.dumps(r["args"]),
             r.get("source"), r.get("step"), r.get("applied"), r.get("outcome")) for r in rows])


def summaries(store: RunStore, run_ids: list[str]) -> dict[str, str]:
    """run id -> "LR ×0.1 @ 130 · unfreeze next @ 140" (applied, not refused): a column beside the config."""
    out: dict[str, list[str]] = {}
    for i in history(store, run_ids):
        if i.step is not None and not i.refused and i.kind not in ("unpause", "pause"):
            out.setdefault(i.run_id, []).append(f"{i.label()} @ {i.step}")
    return {run_id: " · ".join(parts) for run_id, parts in out.items()}


def _select(store: RunStore, where: str, args: tuple) -> list[Intervention]:
    rows = store._conn().execute(f"SELECT {COLUMNS} FROM interventions {where}", args).fetchall()
    return [Intervention(r[0], r[1], r[2], r[3], json.loads(r[4]), *r[5:]) for r in rows]
