"""Used by `make run`: make sure a demo tenant and project exist and print a working key.

The key is kept in VAR_DIR/demo-api-key (a development file, never in production) so
repeated `make run`s print the same key instead of piling up new ones. A key file that no
longer authenticates (revoked, or left over from another database) is replaced.
"""

import os

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from threads.models import Project, Tenant
from threads.tenancy import api_key_authenticate, api_key_create, project_create

DEMO_NAME = "demo"
KEY_FILE_NAME = "demo-api-key"


class Command(BaseCommand):
    help = "Create (once) the demo tenant and project; print the demo API key (last line)."

    def handle(self, *args, **options):
        with transaction.atomic():
            tenant = Tenant.objects.filter(name=DEMO_NAME).order_by("created_at").first()
            if tenant is None:
                tenant = Tenant.objects.create(name=DEMO_NAME)
            project = Project.objects.filter(tenant=tenant).order_by("created_at").first()
            if project is None:
                project = project_create(tenant=tenant, name="Demo project")

        key_file = settings.VAR_DIR / KEY_FILE_NAME
        secret = key_file.read_text().strip() if key_file.exists() else ""
        api_key = api_key_authenticate(secret=secret) if secret else None
        if api_key is None or api_key.tenant_id != tenant.id:
            _, secret = api_key_create(tenant=tenant, name="demo")
            _write_private(key_file, secret + "\n")
        self.stdout.write(f"Demo tenant {tenant.id}, project {project.id}")
        self.stdout.write(f"API key: {secret}")


def _write_private(path, text: str) -> None:
    """Write a file only its owner can read, from the first byte on (no chmod window)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that already existed
