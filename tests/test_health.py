"""/healthz (the process answers) and /readyz (its dependencies answer), no API key needed."""

from __future__ import annotations

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


def test_readyz_is_503_when_a_probe_raises(client, monkeypatch):
    def broken() -> tuple[str, str]:
        raise ConnectionError("connection refused")

    monkeypatch.setitem(health.READINESS_PROBES, "broker", broken)

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"] == {"status": "down", "detail": "connection refused"}
    assert body["checks"]["database"]["status"] == "ok"


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
    assert body["checks"]["broker"]["detail"].startswith("redis://")


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
