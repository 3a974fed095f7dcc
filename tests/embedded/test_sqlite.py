"""The embedded default (`make run`: SQLite, no Redis) runs the same hot paths: the append's
fixed SQL, the size-bounded page query, metadata filters without containment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def embedded_env(tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'embedded.sqlite3'}",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "memory://",
        "LOG_LEVEL": "ERROR",
        "WORKSPACE_ROOT": str(tmp_path / "workspaces"),
        "COLD_STORAGE": "filesystem",
    }


def run_flow(module: str, tmp_path, timeout: int = 120) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=embedded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_appends_pages_and_filters_work_on_sqlite(tmp_path):
    seen = run_flow("tests.embedded.sqlite_flow", tmp_path)
    assert seen["create"] == 201
    assert seen["appends"] == [1, 2, 3, 4, 5]
    assert seen["duplicate"] == [200, [{"id": "m1", "seq": 2}]]
    assert seen["page"] == [["m0", "m1", "m2"], "3"]
    # ~600 characters a message (~616 estimated bytes): three fit in 1,500
    assert seen["bounded"] == [["m0", "m1", "m2"], "3"]
    assert seen["metadata"] == 1
    assert seen["missing"] == 404


def test_every_admin_filter_and_facet_answers_on_sqlite(tmp_path):
    # ?actor_kind=agent and ?_facets=True on the sessions list were 500s here
    # (JSON_EXTRACT(agent, '$'): malformed JSON).
    seen = run_flow("tests.embedded.admin_filters_flow", tmp_path, timeout=300)
    assert seen["failed"] == []
    assert seen["requested"] > 40
