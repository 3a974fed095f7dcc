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

Beside each, a floor measured in the same run on a twin (the same rows): raw psycopg 3 and
plain file I/O doing the least the same work needs — the SELECT of the thread's messages
(read); the originals encoded once (JSON + gzip), written to a file and read back
(archive); the rewrite's statements in one transaction (commit: row lock, counts, INSERT …
SELECT of the compacted ids, DELETE, re-sequencing UPDATE, summary INSERT, thread and
compaction UPDATEs, event, COMMIT), after the same on a small thread to warm the
connection; the sweep's claim SQL per batch (SELECT … FOR NO KEY UPDATE SKIP LOCKED +
UPDATE, COMMIT) over a second set of as many due timers. Summarizing has no floor.

It prints a fixed-width table and asserts nothing about timings. `--json FILE` also writes
the figures as JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

from _common import (
    REPO,
    BenchError,
    add_common_args,
    manage,
    project_env,
    recreate_database,
    run_main,
    table,
    write_json,
)


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
        project_env(database_url, REDIS_URL="", LLM_PROVIDER="local", COLD_STORAGE="filesystem")
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


def seed_thread(n: int, content_bytes: int, tenant=None, project=None, title: str = "long"):
    from threads import message_format, services, tenancy
    from threads.models import Message, Thread

    if tenant is None:
        tenant, _ = tenancy.tenant_create(name="bench")
        project = tenancy.project_create(tenant=tenant, name="bench")
    thread = services.thread_create(tenant=tenant, project_id=project.id, title=title)
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
    # The floor's twins: as many timers, armed far ahead until the floor makes them due.
    twins = Thread.objects.bulk_create(
        [
            Thread(
                tenant=tenant,
                project=project,
                title=f"f{i}",
                warming_enabled=True,
                next_warm_at=now + timedelta(days=1, seconds=i),
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
    # Now the twins' first n_due fall due, as the others did (their claims are leased ahead).
    for i, twin in enumerate(twins[:n_due]):
        twin.next_warm_at = now - timedelta(seconds=1 + i)
    Thread.objects.bulk_update(twins[:n_due], ["next_warm_at"], batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE threads_thread")
    return {
        "batch": SWEEP_BATCH,
        "sweeps": [{"ms": round(ms, 2), "claimed": count} for ms, count in sweeps],
        "claimed": len(claimed),
        "total_ms": round(sum(ms for ms, _ in sweeps), 2),
    }


# --- Floors: the same work as raw SQL and plain files, on a twin ------------------------

SELECT_ALL = (
    "SELECT message_id, seq, role, content, metadata, token_estimate, created_at "
    "FROM threads_message WHERE thread_id = %s ORDER BY seq"
)
REWRITE = (
    "SELECT * FROM threads_thread WHERE id = %(thread)s FOR NO KEY UPDATE",
    (
        "SELECT count(*), coalesce(sum(token_estimate), 0) FROM threads_message "
        "WHERE thread_id = %(thread)s AND seq > %(cut)s"
    ),
    (
        "INSERT INTO threads_compactedmessageid (thread_id, message_id, seq, compaction_id) "
        "SELECT thread_id, message_id, seq, %(compaction)s FROM threads_message "
        "WHERE thread_id = %(thread)s AND seq <= %(cut)s ON CONFLICT DO NOTHING"
    ),
    "DELETE FROM threads_message WHERE thread_id = %(thread)s AND seq <= %(cut)s",
    (
        "UPDATE threads_message SET seq = seq + %(offset)s "
        "WHERE thread_id = %(thread)s AND seq > %(cut)s"
    ),
    (
        "INSERT INTO threads_message (thread_id, message_id, seq, role, content, metadata, "
        "token_estimate, created_at) VALUES (%(thread)s, %(summary_id)s, %(summary_seq)s, "
        "'system', %(content)s, %(metadata)s, %(tokens)s, %(now)s)"
    ),
    (
        "UPDATE threads_thread SET last_seq = %(last_seq)s, message_count = %(count)s, "
        "token_estimate = %(tokens_after)s, history_version = history_version + 1, "
        "updated_at = %(now)s, last_input_tokens = 0, last_cache_read_tokens = 0, "
        "last_cache_creation_tokens = 0 WHERE id = %(thread)s"
    ),
    (
        "UPDATE threads_compaction SET status = 'succeeded', error = '', "
        "messages_summarized = %(summarized)s, messages_kept = %(kept)s, "
        "tokens_before = %(tokens_before)s, tokens_after = %(tokens_after)s, "
        "summary = %(summary)s, summary_message_id = %(summary_id)s, cut_seq = %(cut)s, "
        "archive_key = %(key)s, provider = 'local', usage = %(usage)s, timings = %(timings)s, "
        "finished_at = %(now)s WHERE id = %(compaction)s"
    ),
    (
        "INSERT INTO threads_event (public_id, thread_id, kind, payload, created_at, tenant_id) "
        "VALUES (%(event)s, %(thread)s, 'thread.compacted', %(payload)s, %(now)s, %(tenant)s)"
    ),
)
THREAD_UPDATE = 6  # the index of the thread's UPDATE in REWRITE


def floor_compaction(conn, twin, done, cold_dir: str) -> dict:
    """The floors of the compaction's phases on `twin` (a thread with the same rows), with
    the summary of the run `done`, on `conn` (psycopg 3)."""
    from psycopg.types.json import Jsonb

    from common.ids import new_id
    from threads import message_format
    from threads.models import Compaction

    request = Compaction.objects.create(thread=twin, trigger="manual", keep_last=done.keep_last)
    started = time.perf_counter()
    rows = conn.execute(SELECT_ALL, (twin.pk,)).fetchall()
    conn.commit()
    read_ms = (time.perf_counter() - started) * 1000
    older, kept = rows[: -done.keep_last], rows[-done.keep_last :]
    cut = older[-1][1]

    # The originals encoded once (JSON, gzip at the same level), written, read back.
    path = os.path.join(cold_dir, "floor-archive.json.gz")
    started = time.perf_counter()
    originals = [
        {
            "id": r[0],
            "seq": r[1],
            "role": r[2],
            "content": r[3],
            "metadata": r[4],
            "token_estimate": r[5],
            "created_at": r[6].isoformat(),
        }
        for r in older
    ]
    archive = gzip.compress(
        json.dumps(originals, separators=(",", ":"), ensure_ascii=False).encode(),
        compresslevel=6,
        mtime=0,
    )
    with open(path, "wb") as f:
        f.write(archive)
    with open(path, "rb") as f:
        if f.read() != archive:
            raise BenchError("floor: the archive read back differs")
    archive_ms = (time.perf_counter() - started) * 1000

    content = "The following is a summary of the previous conversation:\n\n" + done.summary
    tokens = message_format.estimate_tokens(content)
    kept_tokens = sum(r[5] for r in kept)
    summary_seq = twin.last_seq + 1
    params = {
        "thread": twin.pk,
        "tenant": twin.tenant_id,
        "cut": cut,
        "offset": summary_seq - cut,
        "compaction": request.pk,
        "summary_id": new_id("msg"),
        "summary_seq": summary_seq,
        "content": Jsonb(content),
        "metadata": Jsonb({"compaction": request.pk, "messages_summarized": len(older)}),
        "tokens": tokens,
        "now": datetime.now(UTC),
        "last_seq": twin.last_seq + summary_seq - cut,
        "count": len(kept) + 1,
        "tokens_after": tokens + kept_tokens,
        "tokens_before": twin.token_estimate,
        "summarized": len(older),
        "kept": len(kept),
        "summary": done.summary,
        "key": "floor-archive.json.gz",
        "usage": Jsonb({}),
        "timings": Jsonb({}),
        "event": new_id("evt"),
        "payload": Jsonb({"compaction": request.pk, "messages_summarized": len(older)}),
    }
    # Timed as rewrite_commit times itself (its commit_ms): from the lock to the thread's
    # UPDATE; then the compaction UPDATE, the event and the COMMIT (deferred foreign keys
    # are checked there), which Threadline's figure leaves to the "rest".
    started = time.perf_counter()
    with conn.cursor() as cur:
        for n, statement in enumerate(REWRITE):
            cur.execute(statement, params)
            if n == THREAD_UPDATE:
                commit_ms = (time.perf_counter() - started) * 1000
                finish = time.perf_counter()
    conn.commit()
    finish_ms = (time.perf_counter() - finish) * 1000
    remaining = conn.execute(
        "SELECT count(*) FROM threads_message WHERE thread_id = %s", (twin.pk,)
    ).fetchone()[0]
    conn.commit()
    if remaining != done.keep_last + 1:
        raise BenchError(f"floor: {remaining} messages left, not {done.keep_last + 1}")
    return {
        "read_ms": round(read_ms, 1),
        "archive_ms": round(archive_ms, 1),
        "commit_ms": round(commit_ms, 1),
        "finish_ms": round(finish_ms, 1),
    }


FLOOR_DUE = (
    "SELECT id FROM threads_thread WHERE next_warm_at <= %(now)s AND warming_enabled "
    "AND status = 'open' AND NOT lifecycle = 'closed' AND NOT lifecycle = 'active' "
    "ORDER BY next_warm_at LIMIT %(limit)s FOR NO KEY UPDATE SKIP LOCKED"
)
FLOOR_CLAIM = (
    "UPDATE threads_thread SET next_warm_at = %(lease)s WHERE next_warm_at <= %(now)s "
    "AND warming_enabled AND status = 'open' AND NOT lifecycle = 'closed' "
    "AND NOT lifecycle = 'active' AND id = ANY(%(ids)s)"
)


def floor_sweep(database_url: str, batch: int) -> dict:
    """The sweep's claim as raw SQL, batch after batch until nothing due is left."""
    import psycopg

    sweeps, claimed = [], 0
    with psycopg.connect(database_url) as conn:
        while True:
            now = datetime.now(UTC)
            params = {"now": now, "limit": batch, "lease": now + timedelta(seconds=120)}
            started = time.perf_counter()
            ids = [pk for (pk,) in conn.execute(FLOOR_DUE, params).fetchall()]
            count = conn.execute(FLOOR_CLAIM, {**params, "ids": ids}).rowcount if ids else 0
            conn.commit()
            sweeps.append(((time.perf_counter() - started) * 1000, count))
            claimed += count
            if len(ids) < batch:
                break
    return {
        "sweeps": [{"ms": round(ms, 2), "claimed": n} for ms, n in sweeps],
        "claimed": claimed,
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
        *_, twin = seed_thread(args.messages, args.content_bytes, tenant, project, "twin")
        small = args.keep_last + 10
        *_, warm = seed_thread(small, args.content_bytes, tenant, project, "floor warm-up")
        compaction = bench_compaction(thread, args.keep_last)
        import psycopg

        from threads.models import Compaction

        done = Compaction.objects.filter(thread=thread, status="succeeded").get()
        with psycopg.connect(url) as conn:
            floor_compaction(conn, warm, done, cold_dir)  # the backend's caches, untimed
            floor = floor_compaction(conn, twin, done, cold_dir)
        sweep = bench_sweep(tenant, project, args.threads, args.due)
        floor["sweep"] = floor_sweep(url, sweep["batch"])
        if floor["sweep"]["claimed"] != args.due:
            raise BenchError(f"floor: claimed {floor['sweep']['claimed']}, due {args.due}")

    def ratio(ours: float, theirs: float) -> str:
        return f"{ours / theirs:.1f}x" if theirs else ""

    t = compaction["timings"]
    rest_ms = compaction["total_ms"] - t["provider_ms"] - t["archive_ms"] - t["commit_ms"]
    rows = [
        ("PostgreSQL", version, "", ""),
        (
            f"compaction of {args.messages:,} messages",
            f"{compaction['total_ms']:,.0f} ms",
            "",
            "",
        ),
        ("  summarize (local provider)", f"{t['provider_ms']:,} ms", "(none)", ""),
        (
            "  archive write + read-back",
            f"{t['archive_ms']:,} ms",
            f"{floor['archive_ms']:,.1f} ms",
            ratio(t["archive_ms"], floor["archive_ms"]),
        ),
        (
            "  commit transaction",
            f"{t['commit_ms']:,} ms",
            f"{floor['commit_ms']:,.1f} ms",
            ratio(t["commit_ms"], floor["commit_ms"]),
        ),
        (
            "  rest: read, cut, prompt, COMMIT …",
            f"{rest_ms:,.0f} ms",
            f"{floor['read_ms'] + floor['finish_ms']:,.1f} ms",
            ratio(rest_ms, floor["read_ms"] + floor["finish_ms"]),
        ),
        ("    of which, floor: SELECT", "", f"{floor['read_ms']:,.1f} ms", ""),
        (
            "    of which, floor: last 2 statements + COMMIT",
            "",
            f"{floor['finish_ms']:,.1f} ms",
            "",
        ),
        (
            "tokens before → after",
            f"{compaction['tokens_before']:,} → {compaction['tokens_after']:,}",
            "",
            "",
        ),
        (
            "rows written",
            f"{compaction['rows_deleted']:,} deleted, {compaction['rows_resequenced']} "
            f"re-sequenced, 1 inserted (+ thread, compaction, event)",
            "",
            "",
        ),
        ("archive (gzip JSON)", f"{compaction['archive_bytes']:,} bytes", "", ""),
        (
            f"sweep claims, {args.due:,} due of {args.threads:,}",
            f"{sweep['total_ms']:,.1f} ms",
            f"{floor['sweep']['total_ms']:,.1f} ms",
            ratio(sweep["total_ms"], floor["sweep"]["total_ms"]),
        ),
    ]
    floor_sweeps = floor["sweep"]["sweeps"]
    for i, s in enumerate(sweep["sweeps"]):
        theirs = floor_sweeps[i]["ms"] if i < len(floor_sweeps) else float("nan")
        rows.append(
            (
                f"  sweep {i + 1} ({s['claimed']} claimed)",
                f"{s['ms']:,.2f} ms",
                f"{theirs:,.2f} ms",
                ratio(s["ms"], theirs),
            )
        )
    print(table(("measure", "Threadline", "floor", "ratio"), rows, right={1, 2, 3}))
    print(
        "floor (same run, a twin with the same rows): read = raw SELECT of the thread's "
        "messages; archive = the originals as JSON + gzip, written to a file and read back; "
        "commit (timed as Threadline times it: from the row lock to the thread's UPDATE; the "
        "compaction UPDATE, the event and the COMMIT fall in the rest) = the "
        "rewrite's statements as raw SQL in one transaction; sweep = the claim's SQL per batch "
        f"over {args.due:,} other due timers"
    )
    figures = {"postgres": version, "compaction": compaction, "sweep": sweep, "floor": floor}
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    run_main(main)
