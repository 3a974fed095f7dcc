#!/usr/bin/env python
"""`make run`: migrate, bootstrap the demo tenant, then run web + Celery worker + beat.

All three run in the foreground as children of this process; Ctrl-C (or SIGTERM) stops
every one of them, and if any of them dies the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PORT = os.environ.get("PORT", "8000")


def manage(*args: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, check=True)


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ["PORT"] = PORT  # gunicorn.conf.py binds 127.0.0.1:$PORT
    manage("migrate", "--no-input", "-v", "0")
    manage("bootstrap_demo")
    print(f"\nThreadline on http://127.0.0.1:{PORT}/ (API: /api/v1/, docs: /api/docs/,")
    print("console: /admin/ (manage.py createsuperuser), metrics: /metrics with METRICS_TOKEN)")
    print("Ctrl-C stops the web server, the worker and beat.\n", flush=True)
    commands = {
        # Served as in production: gunicorn with the repository's gunicorn.conf.py.
        "web": [PY, "-m", "gunicorn", "-c", "gunicorn.conf.py", "config.wsgi"],
        "worker": [PY, "-m", "celery", "-A", "config", "worker", "-l", "info", "-c", "2"],
        "beat": [PY, "-m", "celery", "-A", "config", "beat", "-l", "info"],
    }
    children = {name: subprocess.Popen(cmd, cwd=ROOT) for name, cmd in commands.items()}

    def stop(*_: object) -> None:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()

    signal.signal(signal.SIGTERM, lambda *a: (stop(), sys.exit(0)))
    try:
        while all(child.poll() is None for child in children.values()):
            time.sleep(0.5)
        dead = [name for name, child in children.items() if child.poll() is not None]
        print(f"{', '.join(dead)} exited; stopping the rest.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
