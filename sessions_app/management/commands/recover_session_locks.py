from django.core.management.base import BaseCommand

from sessions_app.recovery import SWEEP_BATCH, session_locks_recover


class Command(BaseCommand):
    help = (
        "Revert session locks whose lease expired (a process died between a handoff's lock "
        "and its commit) to idle, and dispose the workspaces they left. Same as the beat "
        "sweep; repeats batches until none is left."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch", type=int, default=SWEEP_BATCH, help="Locks per batch (default 200)."
        )

    def handle(self, *args, batch: int, **options):
        recovered = disposed = 0
        while True:
            result = session_locks_recover(limit=batch)
            recovered += result["recovered"]
            disposed += result["workspaces_disposed"]
            if result["recovered"] < batch and result["workspaces_disposed"] < batch:
                break
        self.stdout.write(
            f"Recovered {recovered} session lock(s); disposed {disposed} orphaned workspace(s)."
        )
