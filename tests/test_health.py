"""/healthz (the process answers) and /readyz (its dependencies answer), no API key needed."""

from __future__ import annotations

import threading

import pytest

from common import health

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_authentication(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_the_database_ok(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == {"status": "ok", "detail": "postgresql"}


def test_readyz_ignores_a_bad_api_key(client):
    response = client.get("/readyz", HTTP_AUTHORIZATION="Bearer tl_not-a-key")
    assert response.status_code == 200


def test_readyz_is_503_when_the_database_probe_raises_and_echoes_no_error_text(client, monkeypatch):
    def broken() -> tuple[str, str]:
        raise ConnectionError("connection to 10.1.2.3:5432 refused")

    monkeypatch.setitem(health.READINESS_PROBES, "database", broken)

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == {"status": "down", "detail": "ConnectionError"}
    assert "5432" not in response.content.decode()


def test_an_optional_probe_that_raises_only_degrades(client, monkeypatch):
    def broken() -> tuple[str, str]:
        raise ConnectionError("connection refused")

    monkeypatch.setitem(health.READINESS_PROBES, "broker", broken)

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["broker"] == {
        "status": "degraded",
        "detail": "ConnectionError",
    }


def test_readyz_answers_within_its_timeout_when_a_probe_hangs(client, monkeypatch, settings):
    # given: a probe that does not answer for far longer than /readyz may take
    settings.READYZ_TIMEOUT_SECONDS = 0.5
    release = threading.Event()
    monkeypatch.setitem(health.READINESS_PROBES, "broker", lambda: release.wait(30) or ("ok", ""))
    try:
        # when
        first = client.get("/readyz")
        second = client.get("/readyz")  # the first call's probe is still in flight: reused
        # then
        assert first.status_code == second.status_code == 200
        assert first.json()["checks"]["broker"] == {
            "status": "degraded",
            "detail": "no answer in time",
        }
        names = [t.name for t in threading.enumerate()]
        assert names.count("readyz-broker") == 1
    finally:
        release.set()


def test_readyz_is_503_when_a_probe_reports_down(client, monkeypatch):
    monkeypatch.setitem(health.READINESS_PROBES, "cold_storage", lambda: ("down", "bucket gone"))

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["cold_storage"] == {"status": "down", "detail": "bucket gone"}


def test_readyz_stays_200_when_an_optional_dependency_is_degraded(client, monkeypatch):
    monkeypatch.setitem(health.READINESS_PROBES, "redis", lambda: ("degraded", "timeout"))

    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["redis"] == {"status": "degraded", "detail": "timeout"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints_answer_head(client, path):
    assert client.head(path).status_code == 200


def test_readyz_reports_the_celery_broker_ok(client):
    # the test broker is this machine's Redis
    body = client.get("/readyz").json()
    assert body["checks"]["broker"]["status"] == "ok"
    assert body["checks"]["broker"]["detail"] == "redis"  # the transport, never a host


def test_readyz_reports_a_dead_broker_as_degraded_not_down(client, monkeypatch):
    # given: the broker URL points at a port where nothing listens (Celery reads the
    # environment variable before its own configuration)
    from tests.s3 import free_port

    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    # when
    response = client.get("/readyz")
    # then: the API still serves, so the instance stays ready
    assert response.status_code == 200
    assert response.json()["checks"]["broker"]["status"] == "degraded", response.json()
