"""AWS_S3_MAX_ATTEMPTS counts attempts (the first included), and a hung store fails a call
within attempts × AWS_S3_READ_TIMEOUT (+ backoff): checked against a real socket that accepts
connections and never answers, through the settings of a real `manage.py` process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

_GET = """
import time
from threads.storage import cold
started = time.monotonic()
try:
    cold.get("threads/x.json.gz")
except cold.ColdStorageUnavailable as exc:
    print("unavailable", exc.code, round(time.monotonic() - started, 2))
"""


class HungEndpoint:
    """Accepts TCP connections, counts them, reads what is sent and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


def run_get(endpoint: HungEndpoint, tmp_path, **env: str) -> tuple[str, float]:
    proc = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", _GET],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "COLD_STORAGE": "s3",
            "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{endpoint.port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "COLD_SLOTS_DIR": str(tmp_path / "slots"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert line.startswith("unavailable cold_storage_unavailable"), proc.stdout + proc.stderr
    return line, float(line.split()[-1])


def test_max_attempts_counts_every_attempt_and_bounds_the_wait(tmp_path):
    endpoint = HungEndpoint()
    try:
        started = time.monotonic()
        _, took = run_get(endpoint, tmp_path, AWS_S3_MAX_ATTEMPTS="3", AWS_S3_READ_TIMEOUT="0.5")
        assert endpoint.accepted == 3  # not 4: the setting is total attempts
        assert took < 3 * 0.5 + 3  # three read timeouts plus at most ~1 s backoff each
        assert time.monotonic() - started < 60
    finally:
        endpoint.close()


def test_the_defaults_fail_a_hung_call_within_five_seconds(tmp_path):
    endpoint = HungEndpoint()
    try:
        _, took = run_get(endpoint, tmp_path)
        assert endpoint.accepted == 2
        assert took <= 5.5  # 2 × 2 s read timeout + at most 1 s backoff, plus scheduling
    finally:
        endpoint.close()
