"""Shared fixtures: tenants with API clients (ours and an outsider's), projects, threads.

Tests run against this machine's PostgreSQL and Redis (config/settings/test.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from common.breaker import redis_breaker
from tests.factories import ProjectFactory
from tests.s3 import MotoServer
from threads import services, tenancy
from threads.models import Project, Tenant


@dataclass
class Caller:
    """A tenant and an APIClient that authenticates as it."""

    tenant: Tenant
    secret: str
    client: APIClient

    def get(self, path, data=None, **extra):
        return self.client.get(path, data, **extra)

    def post(self, path, data=None, **extra):
        return self.client.post(path, data, format="json", **extra)

    def put(self, path, data=None, **extra):
        return self.client.put(path, data, format="json", **extra)

    def patch(self, path, data=None, **extra):
        return self.client.patch(path, data, format="json", **extra)

    def delete(self, path, **extra):
        return self.client.delete(path, **extra)


def make_caller(name: str) -> Caller:
    tenant, secret = tenancy.tenant_create(name=name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return Caller(tenant=tenant, secret=secret, client=client)


@pytest.fixture(autouse=True)
def _clear_cache():
    redis_breaker.reset()  # a Redis a previous test broke is not skipped in this one
    cache.clear()
    yield


@pytest.fixture(scope="session")
def moto_server():
    """One moto_server for the session (see tests/s3.py)."""
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_server, settings) -> MotoServer:
    """Cold storage on the S3 endpoint, in a fresh bucket for this test. Tests that stop the
    endpoint must start it again (and recreate the bucket) before they end."""
    bucket = moto_server.create_bucket()
    settings.COLD_STORAGE = "s3"
    settings.AWS_STORAGE_BUCKET_NAME = bucket
    settings.STORAGES = {**settings.STORAGES, "cold": moto_server.storage_settings(bucket)}
    moto_server.bucket = bucket
    yield moto_server
    if moto_server.process is None:
        moto_server.start()


@pytest.fixture(scope="session")
def llm_server():
    """One Messages API stand-in for the session (see tests/llm_server.py)."""
    from tests.llm_server import LLMServer

    server = LLMServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def llm(llm_server, settings):
    """LLM_PROVIDER=anthropic with the SDK pointed at the stand-in, reset for this test."""
    llm_server.reset()
    settings.LLM_PROVIDER = "anthropic"
    settings.ANTHROPIC_BASE_URL = llm_server.url
    settings.ANTHROPIC_API_KEY = "test"
    settings.LLM_MODEL = "claude-test"  # (the SDK warns about deprecated real model names)
    yield llm_server
    llm_server.on_request = None


@pytest.fixture
def api(db) -> Caller:
    return make_caller("alice")


@pytest.fixture
def outsider(db) -> Caller:
    """Another tenant: must never see or touch `api`'s objects."""
    return make_caller("charlie")


@pytest.fixture
def project(api) -> Project:
    return ProjectFactory(tenant=api.tenant)


@pytest.fixture
def thread(api, project):
    return services.thread_create(tenant=api.tenant, project_id=project.id, title="First thread")


def assert_error(response, status: int, code: str) -> dict:
    """The response is DESIGN.md's error body with this status and code; returns details."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]["details"]


# Slow directories (minutes each) that run only when named: tests/faults (`make test-faults`)
# and tests/scale (`make test-scale`: a Redis Cluster, PgBouncer, many workers, SIGKILLs).
_SLOW_DIRS = {Path(__file__).resolve().parent / name for name in ("faults", "scale")}


def pytest_ignore_collect(collection_path, config):
    """The slow directories run only when asked for by path, never as part of the default
    `make test`."""
    path = Path(collection_path).resolve()
    if path not in _SLOW_DIRS:
        return None
    asked = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return not any(a == path or path in a.parents for a in asked)
