"""`manage.py import_threads`: POST /threads/import from a shell, for many documents, with a
progress bar.

    manage.py import_threads --project prj_… var/exports/            (every *.json[.gz])
    manage.py import_threads --project prj_… --source openai page-1.json page-2.json
    manage.py import_threads --project prj_… --cold-key threads/messages/thd_….json.gz

One line per document on stdout (`<path> <thread id> created|existing`), then a summary; a
document that fails is reported (with the path of its first bad element) and the others go
on. Importing the same document into the same project again finds the thread it made.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from common.errors import DomainError
from threads.models import Project
from threads.portability import imports
from threads.portability.sources import FORMATS


def _documents(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found.extend(
                sorted(p for p in path.iterdir() if p.name.endswith((".json", ".json.gz")))
            )
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"No such file or directory: {name}")
    return found


class Command(BaseCommand):
    help = "Import thread documents (files, directories or cold-store keys) into a project."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="*", help="Files, or directories of *.json[.gz].")
        parser.add_argument("--project", required=True)
        parser.add_argument("--cold-key", action="append", default=[], help="(repeat)")
        parser.add_argument("--source", choices=("auto", *FORMATS), default="auto")
        parser.add_argument("--order", choices=("asc", "desc"), default="asc")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, paths, project, cold_key, source, order, **options):
        found = Project.objects.filter(pk=project).select_related("tenant").first()
        if found is None:
            raise CommandError(f"No project {project}.")
        jobs: list[tuple[str, dict]] = [
            (str(path), {"path": path}) for path in _documents(paths)
        ] + [(key, {"cold_key": key}) for key in cold_key]
        if not jobs:
            raise CommandError("Name documents to import (paths or --cold-key).")
        counts = {"created": 0, "existing": 0, "failed": 0}
        with tqdm(
            total=len(jobs),
            unit="doc",
            desc="import",
            file=self.stderr._out,
            disable=options["no_progress"],
        ) as bar:
            for name, job in jobs:
                try:
                    body = None
                    if "path" in job:
                        if job["path"].stat().st_size > settings.IMPORT_MAX_BYTES:
                            raise CommandError("larger than IMPORT_MAX_BYTES")
                        body = job["path"].read_bytes()
                    result = imports.thread_import(
                        tenant=found.tenant,
                        project_id=found.pk,
                        body=body,
                        cold_key=job.get("cold_key"),
                        fmt=source,
                        order=order,
                    )
                except (DomainError, CommandError, OSError) as exc:
                    details = getattr(exc, "details", {})
                    where = f" at {details['path']}" if "path" in details else ""
                    self.stderr.write(f"{name} failed{where}: {exc}")
                    counts["failed"] += 1
                else:
                    outcome = "created" if result.created else "existing"
                    counts[outcome] += 1
                    self.stdout.write(f"{name} {result.thread.pk} {outcome}")
                bar.update(1)
        self.stdout.write(
            f"created {counts['created']}, existing {counts['existing']}, failed {counts['failed']}"
        )
        if counts["failed"]:
            raise CommandError(f"{counts['failed']} document(s) failed; see above.")
