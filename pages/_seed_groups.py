"""Compare's seed groups: the selected runs folded into replicates, and whether each gap is real.

Why a section of its own: curves and tables show one run per line, and a student reads any gap as a
win. Here runs that differ only in seed become one group (mean ± std, n seeds), two groups get Welch's
verdict, and pairs of groups that differ in exactly one setting are listed with theirs, so the one the
student cares about is one click away. The engine (`workbench.seed_groups`) groups and judges; this
module only draws.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pages._plots import plot
from workbench import seed_groups as sg

METRIC_PREFIXES = ("test_", "val_", "best_val", "final_val", "source_", "train_loss")


def _metrics(groups: list[sg.Group]) -> list[str]:
    """Final-metric columns with a value in some completed run, the headline first."""
    found = [c for g in groups for c in g.runs.columns if c.startswith(METRIC_PREFIXES)
             and pd.api.types.is_numeric_dtype(g.runs[c]) and pd.notna(pd.Series(g.values(c))).any()]
    found = list(dict.fromkeys(found))
    first = sg.headline(found)
    return sorted(found, key=lambda c: (c != first, c))


def _stats(group: sg.Group, metric: str) -> str:
    """'0.910 ± 0.010 (n=3)', as the verdicts write numbers; '—' without a completed run."""
    s = group.stats(metric)
    if s["mean"] is None:
        return "—"
    return f"{s['mean']:.3f} ± {s['std']:.3f} (n={s['n']})" if s["std"] is not None else f"{s['mean']:.3f} (n=1)"


def _others(groups: list[sg.Group], store: Any) -> dict[str, list[str]]:
    """Per selected group, the completed runs of the same experiment in the store that are not selected."""
    if store is None:
        return {}
    every = store.runs_frame()
    if every.empty:
        return {}
    selected = {i for g in groups for i in g.run_ids}
    done = every[(every["status"] == "completed") & ~every["id"].isin(selected)]
    keys = {g.key for g in groups}
    out: dict[str, list[str]] = {}
    for row in done.to_dict("records"):
        key = sg.seed_key(row)
        if key in keys:
            out.setdefault(key, []).append(row["id"])
    return out


def _add_runs(ids: list[str]) -> None:
    current = [r for r in st.query_params.get("runs", "").split(",") if r]
    st.query_params["runs"] = ",".join(dict.fromkeys([*current, *ids]))


def render(runs: pd.DataFrame, store: Any = None) -> None:
    """The seed-groups section for the selected runs (`runs`: rows of the runs frame; `store`: the run
    store, to offer the unselected seeds of a selected experiment). The caller draws the heading."""
    groups = sg.groups(runs)
    st.caption("Runs that differ only in seed are one group: mean ± std over its completed seeds. A gap "
               "between groups counts when Welch's t-test says it is beyond seed noise (p < 0.05).")
    others = _others(groups, store)
    if others:
        n = sum(len(v) for v in others.values())
        st.button(f"Add the other seeds of these configurations ({n} run{'s' if n != 1 else ''})",
                  key="seed_groups_add", on_click=_add_runs, args=([i for v in others.values() for i in v],),
                  help="Completed runs with the same settings and another seed, not selected yet")
    metrics = _metrics(groups)
    if not metrics:
        st.info("No completed run among the selected ones yet: the groups appear when runs finish.")
        return
    if all(len(g.run_ids) == 1 for g in groups):
        st.caption("Every selected run is a configuration of its own (one seed each), so no gap can be told "
                   "apart from seed noise. Run each with several seeds: **Replicates** on the Train page, or "
                   "`workbench train --seeds 0,1,2`.")
    metric = st.selectbox("Final metric", metrics, key="seed_groups_metric",
                          help="Only completed runs count: a stopped run trained less than its replicates")
    st.dataframe(pd.DataFrame({
        "group": [g.label for g in groups],
        f"{metric} mean ± std": [_stats(g, metric) for g in groups],
        "seeds": [", ".join(str(s) for s in g.seeds) for g in groups],
        "runs": [len(g.run_ids) for g in groups]}), hide_index=True, width="stretch")
    plot(sg.seeds_figure(groups, metric), f"seeds-{metric}", key="seed_groups_fig")
    if len(groups) == 2:
        _two(groups[0], groups[1], metric)
    pairs = sg.one_factor_pairs(groups)
    if len(groups) > 2 and pairs:
        _pairs(pairs, metric)
    elif len(groups) > 2:
        st.caption("No two of these groups differ in exactly one setting, so no gap here is one setting's "
                   "effect: select groups that vary one thing (the Train page's class presets do).")


def _two(a: sg.Group, b: sg.Group, metric: str) -> None:
    """The verdict for exactly two groups, and what besides one setting differs between them."""
    diff = sg.differences(a.settings, b.settings)
    names = (a.name, b.name)
    if len(diff) == 1:
        pair = sg.Pair(a, b, diff[0], (a.settings.get(diff[0]), b.settings.get(diff[0])))
        names = (sg.side_name(pair, 0), sg.side_name(pair, 1))
    said = sg.verdict(a, b, metric, *names)
    (st.success if said.significant else st.info)(said.text)
    if len(diff) > 1:
        st.caption(f"These groups differ in {len(diff)} settings ({', '.join(sg.setting_label(k) for k in diff)}): "
                   "a gap is their joint effect, not one setting's.")


def _pairs(pairs: list[sg.Pair], metric: str) -> None:
    """One-factor comparisons: pairs of groups that differ in exactly one setting, each with its verdict."""
    st.markdown(f"**One-factor comparisons** ({len(pairs)}): groups that differ in exactly one setting. "
                "Pick one to see it alone.")
    verdicts = [sg.pair_verdict(p, metric) for p in pairs]
    table = pd.DataFrame({
        "setting": [sg.setting_label(p.setting) for p in pairs],
        "values": [f"{sg.side_name(p, 0)} vs {sg.side_name(p, 1)}" if p.setting == "method"
                   else f"{p.values[0]} vs {p.values[1]}" for p in pairs],
        "result": [f"{v.winner} is better" if v.winner else "needs more seeds" if v.test is None
                   else "no clear difference" for v in verdicts],
        "p": [v.test.p if v.test is not None else None for v in verdicts],
        "verdict": [v.text for v in verdicts]})
    event = st.dataframe(table, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                         key="seed_groups_pairs", column_config={"p": st.column_config.NumberColumn(format="%.3g")})
    rows = event.selection.rows if event is not None else []
    if not rows:
        return
    pair, said = pairs[rows[0]], verdicts[rows[0]]
    (st.success if said.significant else st.info)(said.text)
    plot(sg.seeds_figure([pair.a, pair.b], metric), f"pair-{metric}", key="seed_groups_pair_fig")
    st.caption(f"{pair.a.label} vs {pair.b.label}: the same settings except "
               f"{sg.setting_label(pair.setting)}.")
