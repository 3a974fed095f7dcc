"""The fair floor of an append: what PostgreSQL itself costs for the work an append must do.

One psycopg 3 transaction per message, on a persistent connection, with the very statements
of threads.history.messages_append (threads/locks.py takes the lock):

1. lock the thread row, tenant-filtered: SELECT status, tier, last_seq, history_version …
   FOR NO KEY UPDATE;
2. the ids already present: SELECT message_id, seq FROM threads_message … UNION ALL the ids
   a compaction summarized away (threads_compactedmessageid);
3. INSERT the message row (seq = last_seq + 1);
4. UPDATE the thread's counters: last_seq, message_count, token_estimate, history_version,
   updated_at, last_activity_at;
5. COMMIT.

No HTTP, no authentication, no JSON request parsing, no hot-cache write: the least any
service can spend to acknowledge an idempotent append with contiguous seqs on this machine.
psycopg prepares each statement after a few executions (prepare_threshold), as a tuned
service would.
"""

from __future__ import annotations

from datetime import UTC, datetime

LOCK = (
    'SELECT "status", "tier", "last_seq", "history_version" FROM "threads_thread" '
    'WHERE "id" = %s AND "tenant_id" = %s FOR NO KEY UPDATE'
)
KNOWN = (
    'SELECT "message_id", "seq" FROM "threads_message" WHERE "thread_id" = %s AND '
    '"message_id" IN (%s) UNION ALL SELECT "message_id", "seq" FROM '
    '"threads_compactedmessageid" WHERE "thread_id" = %s AND "message_id" IN (%s)'
)
INSERT = (
    'INSERT INTO "threads_message" ("thread_id", "message_id", "seq", "role", "content", '
    '"metadata", "token_estimate", "created_at") VALUES (%s, %s, %s, %s, %s, %s, %s, %s)'
)
UPDATE = (
    'UPDATE "threads_thread" SET "last_seq" = %s, "message_count" = "message_count" + %s, '
    '"token_estimate" = "token_estimate" + %s, "history_version" = "history_version" + 1, '
    '"updated_at" = %s, "last_activity_at" = %s WHERE "id" = %s'
)
# The page read of the database path, without its size bound: the floor of a 1,000-row read.
SELECT = (
    'SELECT "message_id", "seq", "role", "content", "metadata", "token_estimate", "created_at" '
    'FROM "threads_message" WHERE "thread_id" = %s AND "seq" > %s ORDER BY "seq" LIMIT %s'
)


def token_estimate(text: str) -> int:
    return 4 + -(-len(text) // 4)  # threads.message_format.estimate_tokens of a string


def fair_append(conn, *, thread: str, tenant: str, message_id: str, role: str, text: str) -> int:
    """One append as one transaction on `conn` (psycopg 3, not autocommit); returns its seq
    (the existing one for a known id, as the API answers a duplicate)."""
    from psycopg.types.json import Jsonb

    with conn.cursor() as cur:
        cur.execute(LOCK, (thread, tenant))
        locked = cur.fetchone()
        if locked is None or locked[1] != "hot" or locked[0] == "archived":
            conn.rollback()
            raise RuntimeError(f"thread {thread} cannot take an append: {locked}")
        cur.execute(KNOWN, (thread, message_id, thread, message_id))
        known = dict(cur.fetchall())
        if message_id in known:
            conn.commit()
            return known[message_id]
        seq, now, tokens = locked[2] + 1, datetime.now(UTC), token_estimate(text)
        cur.execute(INSERT, (thread, message_id, seq, role, Jsonb(text), Jsonb({}), tokens, now))
        cur.execute(UPDATE, (seq, 1, tokens, now, now, thread))
    conn.commit()
    return seq
