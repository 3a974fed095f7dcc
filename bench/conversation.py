"""Conversation services at scale: compaction of a long thread and a warming sweep.

    .venv/bin/python bench/conversation.py [--messages 10000] [--threads 10000] [--due 1000]

Drops and recreates its own PostgreSQL database, migrates it, and measures in-process (the
services are called directly, as a Celery worker calls them):

1. **Compaction** of one `--messages`-message thread with the local provider (offline
   extractive summarizer) and filesystem cold storage: total time and its phases (read,
   summarize, archive write + read-back, the commit transaction), tokens before/after, the
   archive size, and the rows written (deleted, re-sequenced, inserted);
2. **Warming sweep** over `--threads` threads with armed timers, `--due` of them due: the
   time of each sweep's claim (the locked SELECT … SKIP LOCKED + the conditional UPDATE, in
   batches of warming.SWEEP_BATCH) until nothing due is left, and a check that each
   due timer was claimed exactly once.

It prints a fixed-width table and asserts nothing about timings. `--json FILE` also writes
the figures as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta

from _common import (
    REPO,
    BenchError,
    add_common_args,
    manage,
    recreate_database,
    run_main,
    table,
    write_json,
)

from threads import message_format, tenancy


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--messages", type=int, default=10_000, help="messages in the compacted thread")
    add("--keep-last", type=int, default=10, help="messages the compaction keeps (default 10)")
    add("--threads", type=int, default=10_000, help="threads with an armed timer")
    add("--due", type=int, default=1_000, help="of which due now")
    add("--content-bytes", type=int, default=200, help="message text length (default 200)")
    add_common_args(parser, db_name="threadline_bench_conversation")
    args = parser.parse_args(argv)
    if args.messages <= args.keep_last:
        parser.error("--messages must exceed --keep-last")
    if not 0 <= args.due <= args.threads:
        parser.error("--due must be between 0 and --threads")
    return args


def setup_django(database_url: str, cold_dir: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL=database_url,
        DJANGO_DEBUG="false",
        REDIS_URL="",
        LLM_PROVIDER="local",
        COLD_STORAGE="filesystem",
        LOG_LEVEL="WARNING",
    )
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.conf import settings

    # The archive goes to a throwaway directory, not the project's var/cold/.
    settings.STORAGES = {
        **settings.STORAGES,
        "cold": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": cold_dir, "allow_overwrite": True},
        },
    }


def seed_thread(n: int, content_bytes: int):
    from threads import services
    from threads.models import Message, Thread

    tenant, _ = tenancy.tenant_create(name="bench")
    project = tenancy.project_create(tenant=tenant, name="bench")
    thread = services.thread_create(tenant=tenant, project_id=project.id, title="long")
    words = ("the", "deploy", "failed", "because", "the", "migration", "locked", "billing")
    rows, tokens = [], 0
    for i in range(n):
        text = " ".join(words[(i + j) % len(words)] for j in range(content_bytes // 6))
        text = f"Step {i}: {text}."[:content_bytes]
        estimate = message_format.estimate_tokens(text)
        tokens += estimate
        rows.append(
            Message(
                thread_id=thread.pk,
                message_id=f"m{i}",
                seq=i + 1,
                role="user" if i % 2 == 0 else "assistant",
                content=text,
                token_estimate=estimate,
            )
        )
    Message.objects.bulk_create(rows, batch_size=2000)
    Thread.objects.filter(pk=thread.pk).update(
        last_seq=n, message_count=n, token_estimate=tokens, history_version=1
    )
    thread.refresh_from_db()
    return tenant, project, thread


def bench_compaction(thread, keep_last: int) -> dict:
    from threads.conversation import compaction
    from threads.models import Compaction, Message

    # The row compaction_request() would queue (its task is what this runs, in-process).
    request = Compaction.objects.create(thread=thread, trigger="manual", keep_last=keep_last)
    started = time.perf_counter()
    compaction.compaction_run(compaction_id=request.id)
    total_ms = (time.perf_counter() - started) * 1000
    done = Compaction.objects.get(pk=request.id)
    if done.status != "succeeded":
        raise BenchError(f"the compaction failed: {done.error}")
    from threads.storage import cold

    archive_bytes = len(cold.get(done.archive_key))
    remaining = Message.objects.filter(thread_id=thread.pk).count()
    return {
        "total_ms": round(total_ms, 1),
        "timings": done.timings,
        "tokens_before": done.tokens_before,
        "tokens_after": done.tokens_after,
        "messages_summarized": done.messages_summarized,
        "messages_kept": done.messages_kept,
        "rows_deleted": done.messages_summarized,
        "rows_resequenced": done.messages_kept,
        "rows_inserted": 1,
        "messages_after": remaining,
        "archive_bytes": archive_bytes,
        "summary_chars": len(done.summary),
    }


def bench_sweep(tenant, project, n_threads: int, n_due: int) -> dict:
    from django.utils import timezone

    from threads.conversation.warming import SWEEP_BATCH, warming_sweep
    from threads.models import Thread

    now = timezone.now()
    Thread.objects.bulk_create(
        [
            Thread(
                tenant=tenant,
                project=project,
                title=f"t{i}",
                warming_enabled=True,
                next_warm_at=now - timedelta(seconds=1 + i)
                if i < n_due
                else now + timedelta(minutes=10 + i % 100),
            )
            for i in range(n_threads)
        ],
        batch_size=2000,
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE threads_thread")
    sweeps, claimed = [], []
    while True:
        started = time.perf_counter()
        batch = warming_sweep(limit=SWEEP_BATCH)
        sweeps.append(((time.perf_counter() - started) * 1000, len(batch)))
        claimed += [pk for pk, _ in batch]
        if len(batch) < SWEEP_BATCH:
            break
    if len(claimed) != n_due or len(set(claimed)) != n_due:
        raise BenchError(f"claimed {len(claimed)} ({len(set(claimed))} distinct), due {n_due}")
    return {
        "batch": SWEEP_BATCH,
        "sweeps": [{"ms": round(ms, 2), "claimed": count} for ms, count in sweeps],
        "claimed": len(claimed),
        "total_ms": round(sum(ms for ms, _ in sweeps), 2),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url, version = recreate_database(args.pg, args.db_name)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", "DATABASE_URL": url}
    manage("migrate", "--noinput", env=env)
    with tempfile.TemporaryDirectory(prefix="tl-bench-cold-") as cold_dir:
        setup_django(url, cold_dir)
        tenant, project, thread = seed_thread(args.messages, args.content_bytes)
        compaction = bench_compaction(thread, args.keep_last)
        sweep = bench_sweep(tenant, project, args.threads, args.due)

    t = compaction["timings"]
    rest_ms = compaction["total_ms"] - t["provider_ms"] - t["archive_ms"] - t["commit_ms"]
    rows = [
        ("PostgreSQL", version),
        (f"compaction of {args.messages:,} messages", f"{compaction['total_ms']:,.0f} ms"),
        ("  summarize (local provider)", f"{t['provider_ms']:,} ms"),
        ("  archive write + read-back", f"{t['archive_ms']:,} ms"),
        ("  commit transaction", f"{t['commit_ms']:,} ms"),
        ("  read + cut + prompt (rest)", f"{rest_ms:,.0f} ms"),
        (
            "tokens before → after",
            f"{compaction['tokens_before']:,} → {compaction['tokens_after']:,}",
        ),
        (
            "rows written",
            f"{compaction['rows_deleted']:,} deleted, {compaction['rows_resequenced']} "
            f"re-sequenced, 1 inserted (+ thread, compaction, event)",
        ),
        ("archive (gzip JSON)", f"{compaction['archive_bytes']:,} bytes"),
        (f"sweep claims, {args.due:,} due of {args.threads:,}", f"{sweep['total_ms']:,.1f} ms"),
    ]
    rows += [
        (f"  sweep {i + 1} ({s['claimed']} claimed)", f"{s['ms']:,.2f} ms")
        for i, s in enumerate(sweep["sweeps"])
    ]
    print(table(("measure", "value"), rows, right={1}))
    write_json(args.json, {"postgres": version, "compaction": compaction, "sweep": sweep})
    return 0


if __name__ == "__main__":
    run_main(main)
