"""Helpers shared by the compaction, warming and queue tests."""

from __future__ import annotations

from typing import Any

from django.db import connection

from threads import history as thread_history
from threads.models import Event, Message, Thread


def say(n: int, *, start: int = 0, prefix: str = "m") -> list[dict[str, Any]]:
    """`n` alternating user/assistant text messages with ids m0, m1, …"""
    return [
        {
            "id": f"{prefix}{i}",
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"Message number {i} talks about topic {i % 3}.",
        }
        for i in range(start, start + n)
    ]


def append(thread: Thread, messages: list[dict[str, Any]]) -> None:
    thread_history.messages_append(thread=thread, messages=messages)
    thread.refresh_from_db()


def history(thread: Thread) -> list[tuple[str, str]]:
    return list(
        Message.objects.filter(thread_id=thread.pk)
        .order_by("seq")
        .values_list("message_id", "role")
    )


def events(thread: Thread, kind: str) -> list[dict[str, Any]]:
    return list(
        Event.objects.filter(thread_id=thread.pk, kind=kind)
        .order_by("id")
        .values_list("payload", flat=True)
    )


def worker_env(*, llm=None, s3=None) -> dict[str, str]:
    """The environment a Celery worker subprocess needs to reach the stand-ins."""
    env: dict[str, str] = {}
    if llm is not None:
        env |= {
            "LLM_PROVIDER": "anthropic",
            "ANTHROPIC_BASE_URL": llm.url,
            "ANTHROPIC_API_KEY": "test",
            "LLM_MODEL": "claude-test",
        }
    if s3 is not None:
        env |= {
            "COLD_STORAGE": "s3",
            "AWS_STORAGE_BUCKET_NAME": s3.bucket,
            "AWS_S3_ENDPOINT_URL": s3.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_S3_REGION_NAME": "us-east-1",
        }
    return env


def in_other_connection(fn):
    """Wrap `fn` for the LLM stand-in's thread: it runs on that thread's own database
    connection (committed data only) and closes it afterwards."""

    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return run


def start_turn(thread: Thread):
    """A session of the thread in status active (a turn is running)."""
    from sessions_app.models import Session

    return Session.objects.create(
        tenant_id=thread.tenant_id,
        thread=thread,
        project_id=thread.project_id,
        status="active",
    )
