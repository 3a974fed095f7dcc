"""OpenAI Agents SDK sessions on PostgreSQL, driven by bench/peers.py over stdin/stdout.

Runs only in the peers' virtualenv (bench/.peers-venv). One JSON command per line in, one
JSON answer per line out ({"ok": true, ...} or {"ok": false, "error": "..."}). Each timed
command runs its operations here, in this process, and answers with the latency of every
one that succeeded (seconds) and the wall time — the SDK is a library, so the process that
calls it is the one doing its work (bench/peers.py reads this process's CPU from /proc).

Commands:
  {"op": "setup", "url": "postgresql+asyncpg://…", "pool": 5}
  {"op": "sessions", "ids": [...]}                      create the sessions' rows (untimed)
  {"op": "append", "ids": [...], "total": N, "texts": [...]}
        N single-item add_items() calls, split over one asyncio task per session id
        (len(ids) is the concurrency); item i's text is texts[i modulo their number]
  {"op": "fill", "id": "...", "n": N, "texts": [...], "batch": B}   untimed, B items a call
  {"op": "read", "id": "...", "total": N, "expect": M}   N get_items(), each must return M
  {"op": "quit"}

No model is called and nothing leaves 127.0.0.1: only the session store is used.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback

from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

ENGINE = None


def item(i: int, texts: list[str]) -> dict:
    # An EasyInputMessage, the simplest TResponseInputItem; the SDK stores it as JSON text.
    return {"role": "user" if i % 2 == 0 else "assistant", "content": texts[i % len(texts)]}


def session(session_id: str) -> SQLAlchemySession:
    # create_tables=False: the tables exist after "setup"; each command builds its sessions
    # as an application would, around the one shared engine (its connection pool).
    return SQLAlchemySession(session_id, engine=ENGINE)


async def setup(cmd: dict) -> dict:
    global ENGINE
    ENGINE = create_async_engine(cmd["url"], pool_size=cmd.get("pool", 5), max_overflow=0)
    await SQLAlchemySession("bench-setup", engine=ENGINE, create_tables=True)._ensure_tables()
    async with ENGINE.connect() as conn:
        version = (await conn.execute(text("SHOW server_version"))).scalar_one()
    return {"postgres": version}


async def sessions(cmd: dict) -> dict:
    async with ENGINE.begin() as conn:
        for session_id in cmd["ids"]:
            await conn.execute(
                text("INSERT INTO agent_sessions (session_id) VALUES (:id) ON CONFLICT DO NOTHING"),
                {"id": session_id},
            )
    return {}


async def append(cmd: dict) -> dict:
    ids, total, texts = cmd["ids"], cmd["total"], cmd["texts"]
    shares = [total // len(ids) + (1 if w < total % len(ids) else 0) for w in range(len(ids))]
    latencies: list[float] = []
    errors: list[str] = []

    async def work(w: int) -> None:
        s = session(ids[w])
        for i in range(shares[w]):
            start = time.perf_counter()
            try:
                await s.add_items([item(i, texts)])
            except Exception as exc:  # counted, reported, never fatal
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                if len(errors) >= 20:
                    return
                continue
            latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    await asyncio.gather(*(work(w) for w in range(len(ids))))
    return {"latencies": latencies, "wall": time.perf_counter() - started, "errors": errors}


async def fill(cmd: dict) -> dict:
    s, texts, batch = session(cmd["id"]), cmd["texts"], cmd.get("batch", 1)
    for start in range(0, cmd["n"], batch):
        stop = min(start + batch, cmd["n"])
        await s.add_items([item(i, texts) for i in range(start, stop)])
    return {}


async def read(cmd: dict) -> dict:
    s, expect = session(cmd["id"]), cmd["expect"]
    latencies: list[float] = []
    errors: list[str] = []
    for _ in range(cmd["total"]):
        start = time.perf_counter()
        items = await s.get_items()
        elapsed = time.perf_counter() - start
        if len(items) != expect:
            errors.append(f"get_items returned {len(items)} items, not {expect}")
            continue
        latencies.append(elapsed)
    return {"latencies": latencies, "errors": errors}


COMMANDS = {"setup": setup, "sessions": sessions, "append": append, "fill": fill, "read": read}


async def main() -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        try:
            answer = {"ok": True, **(await COMMANDS[cmd["op"]](cmd))}
        except Exception as exc:
            answer = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "tb": traceback.format_exc(),
            }
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    if ENGINE is not None:
        await ENGINE.dispose()


if __name__ == "__main__":
    asyncio.run(main())
