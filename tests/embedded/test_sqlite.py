"""The embedded default (`make run`: SQLite, no Redis) runs the same hot paths: the append's
fixed SQL, the size-bounded page query, metadata filters without containment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_appends_pages_and_filters_work_on_sqlite(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'embedded.sqlite3'}",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "memory://",
        "LOG_LEVEL": "ERROR",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.embedded.sqlite_flow"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["create"] == 201
    assert seen["appends"] == [1, 2, 3, 4, 5]
    assert seen["duplicate"] == [200, [{"id": "m1", "seq": 2}]]
    assert seen["page"] == [["m0", "m1", "m2"], "3"]
    # ~600 characters a message (~616 estimated bytes): three fit in 1,500
    assert seen["bounded"] == [["m0", "m1", "m2"], "3"]
    assert seen["metadata"] == 1
    assert seen["missing"] == 404
