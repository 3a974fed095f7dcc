"""A 20,000-message thread exported and imported with bounded memory (tracemalloc peaks).

In tests/scale (`make test-scale`, not the default run): about 30 s on this machine."""

from __future__ import annotations

import gzip
import secrets
import tempfile
import time
import tracemalloc

import pytest
from django.utils import timezone

from tests.factories import ProjectFactory
from threads.models import Message, Thread
from threads.portability import export, imports
from threads.storage import tiers
from threads.storage.snapshot import Row

pytestmark = pytest.mark.django_db

MESSAGES = 20_000


def test_a_20k_message_thread_exports_and_imports_with_bounded_memory(api, thread, settings):
    other_project = ProjectFactory(tenant=api.tenant)
    settings.IMPORT_MAX_BYTES = 64 * 1024 * 1024
    # given (the rows as a hydrate writes them: one COPY; 20 appends of 1,000 took 40 s)
    now = timezone.now()
    rows = [
        Row(f"m{i}", i + 1, "user", secrets.token_hex(200), {}, 104, now) for i in range(MESSAGES)
    ]
    tiers.insert_messages(thread.pk, rows)
    del rows
    Thread.objects.filter(pk=thread.pk).update(
        last_seq=MESSAGES, message_count=MESSAGES, token_estimate=104 * MESSAGES, history_version=1
    )
    source = Thread.objects.get(pk=thread.pk)

    tracemalloc.start()
    started = time.perf_counter()
    with tempfile.TemporaryFile() as sink:  # as the export command writes it
        for chunk in export.thread_export(thread=source).stream:
            sink.write(chunk)
        export_s = time.perf_counter() - started
        _, export_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        sink.seek(0)
        body = sink.read()
    raw_size = len(gzip.decompress(body))

    tracemalloc.start()
    started = time.perf_counter()
    result = imports.thread_import(tenant=api.tenant, project_id=other_project.id, body=body)
    import_s = time.perf_counter() - started
    _, import_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(
        f"\n20k export: {export_s:.2f}s peak {export_peak / 2**20:.1f} MiB; "
        f"document {raw_size / 2**20:.1f} MiB ({len(body) / 2**20:.1f} MiB gzip); "
        f"import: {import_s:.2f}s peak {import_peak / 2**20:.1f} MiB"
    )
    assert result.created and result.thread.message_count == MESSAGES
    assert Message.objects.filter(thread_id=result.thread.pk).count() == MESSAGES
    # the export holds a batch of 1,000 messages at a time, never the document
    assert export_peak < raw_size / 3
    # the import holds the document (IMPORT_MAX_BYTES bounds it) and its parsed messages
    assert import_peak < raw_size * 6
