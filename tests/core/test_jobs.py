"""The job record module: states declared once, spelled the same by the Lua steps."""

import re
from importlib import resources

from services.core.jobs import TERMINAL, JobState, NodeState, is_terminal

LUA = "\n".join(
    f.read_text()
    for f in resources.files("services.core").joinpath("lua").iterdir()
    if f.name.endswith(".lua")
)


def test_lua_steps_write_only_declared_job_states():
    written = set(re.findall(r"[,(]\s*'status',\s*'(\w+)'", LUA))
    assert {"queued", "running", "succeeded", "failed", "canceled", "expired"} == written
    assert written <= set(JobState)


def test_lua_steps_write_only_declared_node_states():
    written = set(re.findall(r"(?:np \.\. '|:)status',\s*'(\w+)'", LUA))
    assert {"queued", "running", "succeeded", "failed"} == written
    assert written <= set(NodeState)


def test_terminal_states_and_gone_records():
    assert {"succeeded", "failed", "canceled", "expired"} == TERMINAL
    assert is_terminal(b"canceled") and is_terminal("expired") and is_terminal(None)
    assert not is_terminal("running") and not is_terminal(b"queued")
