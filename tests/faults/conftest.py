"""Fixtures of the fault tests: one private PostgreSQL cluster with a migrated database for
the session, a moto_server behind a stallable TCP proxy, private redis-servers, and gunicorn
served with gunicorn.conf.py. Run with `make test-faults` (tests/faults is not part of the
default `make test`)."""

from __future__ import annotations

import pytest

from tests.faults.harness import PrivatePostgres, PrivateRedis, manage, project_env
from tests.proxy import TcpProxy
from tests.s3 import MotoServer


@pytest.fixture(scope="session")
def pg():
    cluster = PrivatePostgres()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def pg_template(pg):
    """A migrated database on the private cluster, used as the template of each test's."""
    url = pg.create_database("faults_template")
    manage("migrate", "--no-input", "-v", "0", env=project_env(DATABASE_URL=url))
    return "faults_template"


@pytest.fixture
def database_url(pg, pg_template, request):
    """A fresh migrated database for this test (CREATE DATABASE … TEMPLATE)."""
    import psycopg

    name = f"faults_{abs(hash(request.node.nodeid)) % 10**8}"
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    return pg.url(name)


@pytest.fixture(scope="session")
def moto():
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_proxy(moto):
    proxy = TcpProxy(moto.port)
    yield proxy
    proxy.shutdown()


@pytest.fixture
def redis_server():
    server = PrivateRedis()
    yield server
    server.stop()


def s3_env(moto, proxy, tmp_path) -> dict[str, str]:
    """Cold storage on moto through the proxy, in a fresh bucket."""
    bucket = moto.create_bucket()
    return {
        "COLD_STORAGE": "s3",
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "COLD_SLOTS_DIR": str(tmp_path / "cold-slots"),
        "THROTTLE_DIR": str(tmp_path / "throttle"),
    }
