"""`manage.py hydrate_thread ID`: bring a cold thread back to the hot tier (idempotent)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from common.errors import DomainError
from threads.models import Thread
from threads.storage.tiers import thread_hydrate


class Command(BaseCommand):
    help = "Hydrate a cold thread: restore its messages from cold storage (no-op when hot)."

    def add_arguments(self, parser):
        parser.add_argument("thread_id", metavar="ID")

    def handle(self, *args, thread_id: str, **options):
        thread = Thread.objects.filter(pk=thread_id).first()
        if thread is None:
            raise CommandError(f"No thread {thread_id}.")
        was = thread.tier
        try:
            thread = thread_hydrate(thread=thread)
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message} {exc.details}") from exc
        if was == thread.tier:
            self.stdout.write(f"{thread.id} is already hot ({thread.message_count} messages).")
        else:
            self.stdout.write(f"{thread.id} hydrated: {thread.message_count} messages, tier hot.")
