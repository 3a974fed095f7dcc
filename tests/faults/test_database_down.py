"""PostgreSQL down (the private cluster stopped for real): every path answers 503
`database_unavailable` with the error body — the API, authentication, the admin's session
lookup, /readyz — nothing 500s and no body names a host or port; once it is back, requests
succeed again."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.faults.harness import Served, new_tenant, project_env, wait_until


@pytest.fixture
def served(database_url, tmp_path):
    env = project_env(
        DATABASE_URL=database_url, REDIS_URL="", THROTTLE_DIR=str(tmp_path / "throttle")
    )
    server = Served(env)
    server.key = new_tenant(env)
    yield server
    server.stop()


def raw_get(served, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def assert_database_unavailable(status: int, body: bytes, port: int) -> None:
    assert status == 503, body[:500]
    error = json.loads(body)["error"]
    assert error["code"] == "database_unavailable", error
    assert str(port) not in body.decode()


def test_every_path_answers_503_database_unavailable_while_postgresql_is_down(served, pg):
    status, project = served.post("/api/v1/projects/", {"name": "p"}, key=served.key)
    assert status == 201
    pg.stop()
    try:
        auth = {"Authorization": f"Bearer {served.key}"}
        for path, headers in [
            ("/api/v1/projects/", auth),  # a list
            (f"/api/v1/projects/{project['id']}/", auth),  # an object
            ("/api/v1/threads/", {"Authorization": "Bearer tl_unknown"}),  # key lookup
            ("/admin/", {"Cookie": "sessionid=abcdefghijklmnopqrstuvwxyz012345"}),  # session
        ]:
            status, body = raw_get(served, path, headers)
            assert_database_unavailable(status, body, pg.port)
        status, body = served.post(
            "/api/v1/threads/", {"project": project["id"], "title": "t"}, key=served.key
        )
        assert status == 503 and body["error"]["code"] == "database_unavailable", body
        status, body = raw_get(served, "/readyz", {})
        assert status == 503, body
        ready = json.loads(body)
        assert ready["checks"]["database"] == {"status": "down", "detail": "OperationalError"}
        assert str(pg.port) not in body.decode()
    finally:
        pg.start()
    # back: a request that meets a connection the restart broke is a 503, the next succeeds
    wait_until(
        lambda: served.get("/api/v1/projects/", key=served.key)[0] == 200,
        timeout=20,
        what="the API answers after PostgreSQL is back",
    )
