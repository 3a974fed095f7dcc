"""Slow-body clients against gunicorn served with gunicorn.conf.py: 16 connections send their
headers and part of a body, then hold; the API keeps answering and the held requests are cut
off by REQUEST_BODY_TIMEOUT_SECONDS with 408 request_timeout."""

from __future__ import annotations

import socket
import time

import pytest

from tests.faults.harness import Served, new_tenant, project_env

BODY_TIMEOUT = 3
HEADER_TIMEOUT = 2


@pytest.fixture
def served(database_url, tmp_path):
    env = project_env(
        DATABASE_URL=database_url,
        REDIS_URL="",
        REQUEST_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        REQUEST_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        THROTTLE_DIR=str(tmp_path / "throttle"),
    )
    server = Served(env)
    server.key = new_tenant(env)
    yield server
    server.stop()


def hold_partial_body(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n".encode()
        + b'{"messages"'  # 11 of the 100 bytes, then nothing
    )
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (it closes a cut-off one)."""
    reply = b""
    while chunk := sock.recv(4096):
        reply += chunk
    return reply


def test_held_bodies_do_not_stall_the_api_and_are_cut_off(served):
    # given: a thread to read and append to
    status, project = served.post("/api/v1/projects/", {"name": "p"}, key=served.key)
    assert status == 201, project
    status, thread = served.post(
        "/api/v1/threads/", {"project": project["id"], "title": "t"}, key=served.key
    )
    assert status == 201, thread
    path = f"/api/v1/threads/{thread['id']}/messages"
    # when: 16 connections hold half-sent bodies
    held = [hold_partial_body(served.port, path) for _ in range(16)]
    started = time.monotonic()
    try:
        time.sleep(0.5)  # they are all being read by now
        # then: health and API calls keep answering meanwhile
        answers = []
        for n in range(10):
            answers.append(served.get("/healthz", timeout=5)[0])
            answers.append(served.get(path, key=served.key, timeout=5)[0])
            body = {"messages": [{"id": f"m{n}", "role": "user", "content": "hi"}]}
            answers.append(served.post(path, body, key=served.key, timeout=5)[0])
        assert answers == [200, 200, 201] * 10
        # and each held request is answered 408 once its body deadline has passed
        for sock in held:
            reply = read_until_closed(sock)
            assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
            assert b'"request_timeout"' in reply
        elapsed = time.monotonic() - started
        assert elapsed < BODY_TIMEOUT + 5  # the documented cut-off, plus the watchdog's tick
    finally:
        for sock in held:
            sock.close()
    # nothing of the held requests was stored
    status, page = served.get(path, key=served.key)
    assert [m["id"] for m in page["results"]] == [f"m{n}" for n in range(10)]


def test_trickled_headers_do_not_stall_the_api_and_are_cut_off(served):
    # given: 16 connections that send part of their headers, then one more line a second
    held = []
    for _ in range(16):
        sock = socket.create_connection(("127.0.0.1", served.port), timeout=30)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        held.append(sock)
    started = time.monotonic()
    cut: set[int] = set()
    answers = []
    try:
        while len(cut) < len(held) and time.monotonic() - started < 30:
            for n, sock in enumerate(held):
                if n in cut:
                    continue
                try:
                    sock.sendall(b"X-Trickle: 1\r\n")
                except OSError:
                    cut.add(n)  # the server closed it
            # then: the API answers meanwhile
            answers.append(served.get("/healthz", timeout=5)[0])
            answers.append(served.get("/api/v1/projects/", key=served.key, timeout=5)[0])
            time.sleep(1)
        elapsed = time.monotonic() - started
    finally:
        for sock in held:
            sock.close()
    assert set(answers) == {200}, answers
    # and each trickling connection was closed by the header deadline (after gunicorn's 5 s
    # wait for a new connection's first bytes at most, plus the watchdog's tick)
    assert len(cut) == len(held)
    assert elapsed < 5 + HEADER_TIMEOUT + 5
