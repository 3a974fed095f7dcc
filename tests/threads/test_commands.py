"""Management commands: create_tenant, create_api_key and make run's bootstrap_demo."""

from __future__ import annotations

import json
import stat
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from threads import tenancy
from threads.models import ApiKey, Project, Tenant

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def authenticates(client, secret: str) -> bool:
    response = client.get("/api/v1/threads/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code in (200, 401), response.content
    return response.status_code == 200


# --- create_tenant -----------------------------------------------------------------------


def test_create_tenant_prints_a_working_key_on_its_last_line(client):
    output = run("create_tenant", "acme")

    secret = last_line(output)
    tenant = Tenant.objects.get(name="acme")
    assert tenant.id in output
    assert authenticates(client, secret)
    assert tenancy.api_key_authenticate(secret=secret).tenant == tenant


def test_create_tenant_with_json_prints_the_tenant_and_its_key(client):
    data = json.loads(run("create_tenant", "acme", "--json"))

    assert data["tenant"] == Tenant.objects.get(name="acme").id
    assert data["name"] == "acme"
    assert authenticates(client, data["api_key"])


def test_create_tenant_stores_only_the_hash_of_the_key():
    secret = last_line(run("create_tenant", "acme"))
    api_key = ApiKey.objects.get(tenant__name="acme")
    assert secret not in (api_key.secret_hash, api_key.prefix, api_key.name)


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_create_tenant_refuses_a_bad_name(name):
    with pytest.raises(CommandError):
        run("create_tenant", name)
    assert not Tenant.objects.exists()


# --- create_api_key ----------------------------------------------------------------------


def test_create_api_key_adds_a_working_key_to_a_tenant(client, api):
    output = run("create_api_key", api.tenant.id, "--name", "ci")

    secret = last_line(output)
    assert secret != api.secret
    assert authenticates(client, secret)
    assert authenticates(client, api.secret)  # the first key keeps working
    assert api.tenant.api_keys.filter(name="ci").count() == 1


def test_create_api_key_with_json(client, api):
    data = json.loads(run("create_api_key", api.tenant.id, "--json"))

    assert data["tenant"] == api.tenant.id
    assert ApiKey.objects.get(pk=data["key_id"]).tenant == api.tenant
    assert authenticates(client, data["api_key"])


def test_create_api_key_for_an_unknown_tenant_is_a_command_error():
    with pytest.raises(CommandError, match="tnt_doesnotexist"):
        run("create_api_key", "tnt_doesnotexist")
    assert not ApiKey.objects.exists()


def test_create_api_key_refuses_a_name_too_long(api):
    with pytest.raises(CommandError):
        run("create_api_key", api.tenant.id, "--name", "x" * 201)
    assert api.tenant.api_keys.count() == 1


# --- bootstrap_demo ----------------------------------------------------------------------


@pytest.fixture
def key_file(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path / "demo-api-key"


def demo_key(output: str) -> str:
    line = last_line(output)
    assert line.startswith("API key: ")
    return line.removeprefix("API key: ")


def test_bootstrap_demo_creates_a_tenant_a_project_and_a_working_key(client, key_file):
    secret = demo_key(run("bootstrap_demo"))

    tenant = Tenant.objects.get(name="demo")
    assert Project.objects.filter(tenant=tenant).count() == 1
    assert authenticates(client, secret)
    assert key_file.read_text().strip() == secret
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_bootstrap_demo_is_idempotent(client, key_file):
    first = demo_key(run("bootstrap_demo"))
    second = demo_key(run("bootstrap_demo"))

    assert first == second
    assert Tenant.objects.filter(name="demo").count() == 1
    assert Project.objects.count() == 1
    assert ApiKey.objects.count() == 1
    assert authenticates(client, second)


def test_bootstrap_demo_replaces_a_key_that_no_longer_authenticates(client, key_file):
    # given a revoked demo key in the key file
    first = demo_key(run("bootstrap_demo"))
    tenancy.api_key_revoke(api_key=ApiKey.objects.get())

    # when
    second = demo_key(run("bootstrap_demo"))

    # then
    assert second != first
    assert key_file.read_text().strip() == second
    assert authenticates(client, second)
    assert Tenant.objects.filter(name="demo").count() == 1


def test_bootstrap_demo_replaces_a_key_file_from_another_database(client, key_file):
    # given a key file whose key belongs to some other tenant
    key_file.write_text(last_line(run("create_tenant", "someone-else")) + "\n")

    secret = demo_key(run("bootstrap_demo"))

    key = tenancy.api_key_authenticate(secret=secret)
    assert key.tenant.name == "demo"
    assert key_file.read_text().strip() == secret


def test_bootstrap_demo_recreates_a_missing_key_file(client, key_file):
    first = demo_key(run("bootstrap_demo"))
    key_file.unlink()

    second = demo_key(run("bootstrap_demo"))

    assert second != first
    assert authenticates(client, second)
    assert Tenant.objects.filter(name="demo").count() == 1
