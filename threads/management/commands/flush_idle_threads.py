"""`manage.py flush_idle_threads`: what the beat sweep does, from a shell, with a progress bar.

Flushes every hot thread idle longer than COLD_AFTER_SECONDS (or --older-than) and not
generating, batch by batch, then prints one summary line: `flushed N, skipped M, failed K`.
Safe to run beside the workers: each flush claims its thread with a conditional UPDATE.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from threads.storage.sweep import SWEEP_BATCH_SIZE, flush_idle_batch, idle_cutoff, idle_threads


class Command(BaseCommand):
    help = "Flush idle threads to cold storage (progress bar, then a summary line)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=int,
            default=None,
            metavar="SECONDS",
            help="Idle for longer than this (default: COLD_AFTER_SECONDS).",
        )
        parser.add_argument("--batch-size", type=int, default=SWEEP_BATCH_SIZE)
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, older_than: int | None, batch_size: int, **options):
        if older_than is not None and older_than < 0:
            raise CommandError("--older-than must be 0 or more seconds.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        cutoff = idle_cutoff(older_than)
        total = idle_threads(cutoff=cutoff).count()
        counts = {"flushed": 0, "skipped": 0, "failed": 0}
        with tqdm(
            total=total,
            unit="thread",
            desc="flush",
            file=self.stderr._out,
            disable=options["no_progress"],
        ) as bar:

            def report(thread_id: str, outcome: str) -> None:
                counts[outcome] += 1
                bar.update(1)
                bar.set_postfix(counts, refresh=False)

            after = None
            while True:
                batch = flush_idle_batch(
                    cutoff=cutoff, after=after, batch_size=batch_size, on_thread=report
                )
                if batch.cursor is None:
                    break
                after = batch.cursor
        self.stdout.write(
            f"flushed {counts['flushed']}, skipped {counts['skipped']}, failed {counts['failed']}"
        )
        if counts["failed"]:
            self.stderr.write("Failed threads stay hot; see the warnings above and retry.")
