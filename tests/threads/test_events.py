"""Every event kind is named once, in threads/events.py, and the admin's filter offers it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from threads import events
from threads.admin.trail import EventKindFilter

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("common", "threads", "sessions_app", "handoffs", "tasks")
KIND_SHAPE = re.compile(
    r"^(thread|session|subsession|handoff|compaction|warm|warming|provider|queue)\.[a-z_]+$"
)


def kind_literals_outside_events_module() -> list[str]:
    found = []
    for room in ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            if "migrations" in path.parts or path == ROOT / "threads" / "events.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    if KIND_SHAPE.match(node.value):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    return found


def test_no_event_kind_is_spelled_outside_the_events_module():
    assert kind_literals_outside_events_module() == []


def test_every_kind_is_named_once_and_offered_by_the_admin_filter():
    assert len(events.KINDS) == len(set(events.KINDS))
    assert all(KIND_SHAPE.match(kind) for kind in events.KINDS)
    assert EventKindFilter.kinds == list(events.KINDS)
