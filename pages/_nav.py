"""Every page runs inside app.py's `st.navigation`, also for the first visitors after a restart.

Streamlit guesses "multipage v1" when a `pages/` folder exists and nothing has called `st.navigation`
yet in this process: visitors landing on /runs before that get the page script alone (narrow
layout, every helper module listed as a page). app.py marks the script runs it navigates; a page
run without that mark clears Streamlit's guess and reruns, so app.py resolves the same URL through
the real navigation. The check runs at run time, never at import time: a rerun raised while a module
is being imported would hand other sessions' concurrent imports a half-initialised module.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import get_script_run_ctx

_MARK = "_workbench_navigation"


def mark_app_navigation() -> None:
    """Called by app.py before it runs the page: this script run goes through the app's navigation."""
    ctx = get_script_run_ctx()
    if ctx is not None:  # the coordinator object is new for every script run, so a mark never goes stale
        setattr(ctx, _MARK, ctx.parallel_coordinator)


def use_app_navigation() -> None:
    """Called first by every page: bounce a session's first run if Streamlit started it without app.py.

    Only the first run of a session can be a guessed one in a server (the guess ends with the first
    `st.navigation` call); later runs are left alone, so a rerun never swallows a click. (Streamlit's
    AppTest re-guesses on every run and then runs the page directly, which is harmless there.)
    """
    ctx = get_script_run_ctx()
    if ctx is None or st.session_state.get(_MARK):
        return
    st.session_state[_MARK] = True
    if getattr(ctx, _MARK, None) is not ctx.parallel_coordinator:
        PagesManager.uses_pages_directory = False
        st.rerun()
