#!/usr/bin/env python
"""`make fuzz`: schemathesis over the whole published schema, every check, bounded in time.

It makes a database of its own (`<DATABASE_URL's name>_fuzz`, dropped and re-created),
migrates it, creates a tenant with a project, a thread and a session (so that some
generated requests reach real objects), starts gunicorn on a free port and runs `st run`
against `/api/schema/` with that tenant's key. The exit status is schemathesis's: any
failure of any check fails the target. `schemathesis.toml` beside the project holds the
settings a run shares (the checks' expected statuses, and why).

Environment: DATABASE_URL (PostgreSQL; its server is used, not its database), REDIS_URL,
FUZZ_MAX_EXAMPLES (default 25), FUZZ_MAX_TIME seconds (default 240), FUZZ_SEED (default
fixed, so a run is reproducible; `random` for a fresh one).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fuzz_database_url() -> str:
    url = urlparse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/threadline"))
    if not url.scheme.startswith("postgres"):
        sys.exit("make fuzz needs DATABASE_URL to point at PostgreSQL.")
    name = url.path.lstrip("/") or "threadline"
    return urlunparse(url._replace(path=f"/{name}_fuzz"))


def recreate_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    admin = urlunparse(parsed._replace(path="/postgres"))
    name = parsed.path.lstrip("/")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [PY, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


def seed_objects(env: dict[str, str], base: str, key: str) -> None:
    """A project, a thread with two messages and a session: real objects to aim at."""

    def call(method: str, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            base + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    project = call("POST", "/api/v1/projects/", {"name": "fuzz"})
    thread = call("POST", "/api/v1/threads/", {"project": project["id"], "title": "fuzz"})
    messages = [{"id": "m1", "role": "user", "content": "Hello"}]
    call("POST", f"/api/v1/threads/{thread['id']}/messages/", {"messages": messages})
    call(
        "POST", "/api/v1/sessions/", {"thread": thread["id"], "actor": {"kind": "agent", "id": "a"}}
    )


def wait_until_up(base: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit("gunicorn exited before it answered.")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    sys.exit(f"gunicorn did not answer within {timeout:.0f} s.")


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="threadline-fuzz-"))
    # A real repository with a commit, so every workspace backend the schema lists works.
    repo = workdir / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=fuzz", "-c", "user.email=fuzz@localhost"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "fuzz"], check=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": fuzz_database_url(),
        "WORKSPACE_ROOT": str(workdir / "workspaces"),
        "WORKSPACE_GIT_REPO": str(repo),
        "COLD_STORAGE": "filesystem",
        "LLM_PROVIDER": "local",
        "API_RATE_LIMIT_PER_MINUTE": "0",
        # scripts/fuzz_hooks.py: no generated case carries a string PostgreSQL cannot store.
        "SCHEMATHESIS_HOOKS": "scripts.fuzz_hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    recreate_database(env["DATABASE_URL"])
    manage(env, "migrate", "--no-input", "-v", "0")
    key = json.loads(manage(env, "create_tenant", "fuzz", "--json").strip().splitlines()[-1])[
        "api_key"
    ]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_log = (workdir / "gunicorn.log").open("w")  # Django's request warnings, kept aside
    server = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "-c",
            "gunicorn.conf.py",  # served as `make run` and production serve it
            "config.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "--log-level",
            "warning",
            "--limit-request-line",
            "0",  # no limit: gunicorn's own 414 page for a long (valid) query is not the API's
        ],
        cwd=ROOT,
        env=env,
        stderr=server_log,
    )
    returncode = 1
    try:
        wait_until_up(base, server)
        seed_objects(env, base, key)
        seed = os.environ.get("FUZZ_SEED", "20261202")
        command = [
            str(BIN / "st"),
            "run",
            f"{base}/api/schema/?format=json",
            "--checks",
            "all",
            "-H",
            f"Authorization: Bearer {key}",
            "--max-examples",
            os.environ.get("FUZZ_MAX_EXAMPLES", "25"),
            "--max-time",
            os.environ.get("FUZZ_MAX_TIME", "240"),
            "--request-timeout",
            "30",
            "--workers",
            "1",  # hypothesis parses lambdas' source; two threads at once crash CPython 3.11's ast
            "--no-color",
            # No example database: a run is its seed's, not the replay of earlier runs' finds.
            "--generation-database",
            "none",
        ]
        if seed != "random":
            command += ["--seed", seed]
        command += sys.argv[1:]
        returncode = subprocess.run(command, cwd=ROOT, env=env).returncode
        return returncode
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        server_log.close()
        if returncode:  # the server's side of the failures (tracebacks of any 500)
            lines = (workdir / "gunicorn.log").read_text(errors="replace").splitlines()
            errors = [line for line in lines if "WARNING django.request" not in line]
            print("\n--- gunicorn (last 60 lines, request warnings left out) ---")
            print("\n".join(errors[-60:]))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
