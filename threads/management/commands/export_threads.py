"""`manage.py export_threads`: export documents (threads/portability/document.py) of many
threads, to a directory or a prefix of the cold store, with a progress bar.

    manage.py export_threads --project prj_… --to var/exports
    manage.py export_threads --tenant tnt_… --metadata customer=acme --to cold:exports/2026-12

Each thread becomes `<thread id>.threadline.json.gz`, streamed to its file (a directory) or
spooled through a temporary file (the store); one line per thread on stdout, then a summary.
A thread whose history changes while it is exported is tried once more, then reported.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from tqdm import tqdm

from common.errors import DomainError
from threads import selectors
from threads.models import Thread, ThreadStatus, Tier
from threads.portability import export
from threads.storage import cold

COLD_TARGET = "cold:"


class Command(BaseCommand):
    help = "Export threads (a project, a tenant, a filter) to a directory or a cold-store prefix."

    def add_arguments(self, parser):
        parser.add_argument("--project", help="Every thread of this project.")
        parser.add_argument("--tenant", help="Every thread of this tenant.")
        parser.add_argument("--thread", action="append", default=[], help="This thread (repeat).")
        parser.add_argument("--status", choices=ThreadStatus.values)
        parser.add_argument("--tier", choices=Tier.values)
        parser.add_argument(
            "--metadata", action="append", default=[], metavar="KEY=VALUE", help="(repeat)"
        )
        parser.add_argument(
            "--to", required=True, help=f"A directory, or {COLD_TARGET}<prefix> in the cold store."
        )
        parser.add_argument(
            "--originals", action="store_true", help="Include compaction originals."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, **options):
        threads = self._selection(options)
        target = options["to"]
        if target.startswith(COLD_TARGET):
            prefix = target[len(COLD_TARGET) :].strip("/")
            if not prefix:
                raise CommandError(f"Name a prefix: {COLD_TARGET}<prefix>.")
            write = self._to_cold(prefix)
        else:
            directory = Path(target)
            directory.mkdir(parents=True, exist_ok=True)
            write = self._to_directory(directory)
        done = failed = 0
        with tqdm(
            total=threads.count(),
            unit="thread",
            desc="export",
            file=self.stderr._out,
            disable=options["no_progress"],
        ) as bar:
            for thread_id in threads.values_list("pk", flat=True).iterator():
                try:
                    where = self._export_one(thread_id, write, originals=options["originals"])
                    self.stdout.write(f"{thread_id} {where}")
                    done += 1
                except (DomainError, export.ExportInterrupted, OSError) as exc:
                    self.stderr.write(f"{thread_id} failed: {type(exc).__name__} {exc}")
                    failed += 1
                bar.update(1)
        self.stdout.write(f"exported {done}, failed {failed}")
        if failed:
            raise CommandError(f"{failed} thread(s) failed; see above.")

    def _selection(self, options):
        if not (options["project"] or options["tenant"] or options["thread"]):
            raise CommandError("Choose threads: --project, --tenant or --thread.")
        threads = Thread.objects.all()
        if options["project"]:
            threads = threads.filter(project_id=options["project"])
        if options["tenant"]:
            threads = threads.filter(tenant_id=options["tenant"])
        if options["thread"]:
            threads = threads.filter(pk__in=options["thread"])
        if options["status"]:
            threads = threads.filter(status=options["status"])
        if options["tier"]:
            threads = threads.filter(tier=options["tier"])
        params = {}
        for pair in options["metadata"]:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise CommandError(f"--metadata takes KEY=VALUE, not {pair!r}.")
            params[f"metadata.{key}"] = value
        try:
            threads = threads.filter(selectors.metadata_filter(params, vendor=connection.vendor))
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        return threads.order_by("created_at", "pk")

    def _export_one(self, thread_id: str, write, *, originals: bool) -> str:
        for attempt in range(2):
            thread = Thread.objects.get(pk=thread_id)
            try:
                return write(export.thread_export(thread=thread, originals=originals))
            except export.ExportInterrupted:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _to_directory(self, directory: Path):
        def write(result: export.Export) -> str:
            path = directory / result.filename
            partial = path.with_suffix(".partial")
            with partial.open("wb") as handle:
                for chunk in result.stream:
                    handle.write(chunk)
            partial.replace(path)  # only a complete document gets the real name
            return str(path)

        return write

    def _to_cold(self, prefix: str):
        def write(result: export.Export) -> str:
            with tempfile.TemporaryFile() as spool:
                for chunk in result.stream:
                    spool.write(chunk)
                spool.seek(0)
                key = f"{prefix}/{result.filename}"
                cold.put(key, spool.read())
            return f"{COLD_TARGET}{key}"

        return write
