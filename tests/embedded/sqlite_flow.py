"""Run by tests/embedded/test_sqlite.py in its own process: the hot paths on the embedded
default (SQLite, no Redis), through the API. Prints one JSON line of what it saw."""

from __future__ import annotations

import json
import os
import sys

import django


def main() -> None:
    django.setup()
    from django.core.management import call_command
    from django.test import Client, override_settings

    from threads import tenancy

    call_command("migrate", verbosity=0)
    tenant, secret = tenancy.tenant_create(name="embedded")
    project = tenancy.project_create(tenant=tenant, name="p")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    seen: dict = {}

    def post(path, body):
        return client.post(path, json.dumps(body), content_type="application/json")

    created = post("/api/v1/threads", {"project": project.pk, "metadata": {"k": 1}})
    seen["create"] = created.status_code
    thread = created.json()["id"]
    messages = f"/api/v1/threads/{thread}/messages"
    seen["appends"] = [
        post(
            messages, {"messages": [{"id": f"m{i}", "role": "user", "content": "hi " * 200}]}
        ).json()["last_seq"]
        for i in range(5)
    ]
    duplicate = post(messages, {"messages": [{"id": "m1", "role": "user", "content": "again"}]})
    seen["duplicate"] = [duplicate.status_code, duplicate.json()["messages"]]
    page = client.get(messages, {"limit": 3}).json()
    seen["page"] = [[m["id"] for m in page["results"]], page["next"]]
    with override_settings(PAGE_MAX_BYTES=1500):
        bounded = client.get(messages, {"limit": 100}).json()
    seen["bounded"] = [[m["id"] for m in bounded["results"]], bounded["next"]]
    seen["metadata"] = len(client.get("/api/v1/threads", {"metadata.k": "1"}).json()["results"])
    seen["missing"] = post(
        "/api/v1/threads/thd_missing00000/messages",
        {"messages": [{"role": "user", "content": "x"}]},
    ).status_code
    sys.stdout.write(json.dumps(seen) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    main()
