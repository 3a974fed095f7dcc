"""manage.py export_threads and import_threads."""

from __future__ import annotations

import gzip
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.threads.portability import fixtures
from tests.threads.portability.helpers import messages_of
from threads import history, services
from threads.models import Thread
from threads.storage import cold

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, "--no-progress", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def two_threads(api, project):
    a = services.thread_create(
        tenant=api.tenant, project_id=project.id, title="A", metadata={"customer": "acme"}
    )
    b = services.thread_create(
        tenant=api.tenant, project_id=project.id, title="B", metadata={"customer": "other"}
    )
    for thread, ids in ((a, ["a1", "a2"]), (b, ["b1"])):
        history.messages_append(
            thread=thread, messages=[{"id": i, "role": "user", "content": i} for i in ids]
        )
    return a, b


def test_export_a_project_to_a_directory_and_import_it_elsewhere(
    api, project, other_project, tmp_path
):
    a, b = two_threads(api, project)

    out, _ = run("export_threads", "--project", project.id, "--to", str(tmp_path))

    assert out.splitlines()[-1] == "exported 2, failed 0"
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted([f"{a.id}.threadline.json.gz", f"{b.id}.threadline.json.gz"])
    doc = json.loads(gzip.decompress((tmp_path / f"{a.id}.threadline.json.gz").read_bytes()))
    assert [m["id"] for m in doc["messages"]] == ["a1", "a2"]

    # when
    out, _ = run("import_threads", "--project", other_project.id, str(tmp_path))

    # then
    assert out.splitlines()[-1] == "created 2, existing 0, failed 0"
    copies = Thread.objects.filter(project=other_project).order_by("title")
    assert [t.title for t in copies] == ["A", "B"]
    assert [m["id"] for m in messages_of(api, copies[0].id)] == ["a1", "a2"]
    # and again: nothing twice
    out, _ = run("import_threads", "--project", other_project.id, str(tmp_path))
    assert out.splitlines()[-1] == "created 0, existing 2, failed 0"


def test_export_by_metadata_filter_to_a_cold_store_prefix(api, project, s3):
    a, _ = two_threads(api, project)

    out, _ = run(
        "export_threads", "--tenant", api.tenant.id, "--metadata", "customer=acme",
        "--to", "cold:exports/run1",
    )  # fmt: skip

    assert out.splitlines() == [
        f"{a.id} cold:exports/run1/{a.id}.threadline.json.gz",
        "exported 1, failed 0",
    ]
    body = cold.get(f"exports/run1/{a.id}.threadline.json.gz")
    assert json.loads(gzip.decompress(body))["thread"]["id"] == a.id


def test_import_reports_a_bad_document_with_its_path_and_goes_on(api, project, tmp_path):
    (tmp_path / "good.json").write_text(json.dumps(fixtures.zeitlich_v1()))
    (tmp_path / "bad.json").write_text(json.dumps({"v": 1, "messages": [7]}))

    with pytest.raises(CommandError):
        run("import_threads", "--project", project.id, str(tmp_path))

    assert Thread.objects.filter(project=project).count() == 1


def test_import_by_cold_key(api, project, s3):
    key = "threads/messages/thd_fromz.json.gz"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=fixtures.gz(fixtures.zeitlich_v1()))

    out, _ = run("import_threads", "--project", project.id, "--cold-key", key)

    assert out.splitlines()[0] == f"{key} thd_fromz created"


def test_the_commands_refuse_unclear_requests(project, tmp_path):
    with pytest.raises(CommandError):
        run("export_threads", "--to", str(tmp_path))
    with pytest.raises(CommandError):
        run("import_threads", "--project", "prj_missing", str(tmp_path))
    with pytest.raises(CommandError):
        run("import_threads", "--project", project.id)
