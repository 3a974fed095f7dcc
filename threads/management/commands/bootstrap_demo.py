"""Used by `make run`: make sure a demo tenant and project exist and print a working key.

The key is kept in var/demo-api-key (a development file, never in production) so repeated
`make run`s print the same key instead of piling up new ones.
"""

from django.conf import settings
from django.core.management.base import BaseCommand

from threads.models import Project, Tenant
from threads.services import api_key_authenticate, api_key_create, project_create

DEMO_NAME = "demo"


class Command(BaseCommand):
    help = "Create (once) the demo tenant and project; print the demo API key."

    def handle(self, *args, **options):
        key_file = settings.VAR_DIR / "demo-api-key"
        tenant = Tenant.objects.filter(name=DEMO_NAME).order_by("created_at").first()
        if tenant is None:
            tenant = Tenant.objects.create(name=DEMO_NAME)
        project = Project.objects.filter(tenant=tenant).order_by("created_at").first()
        if project is None:
            project = project_create(tenant=tenant, name="Demo project")
        secret = key_file.read_text().strip() if key_file.exists() else ""
        api_key = api_key_authenticate(secret=secret) if secret else None
        if api_key is None or api_key.tenant_id != tenant.id:
            _, secret = api_key_create(tenant=tenant, name="demo")
            key_file.write_text(secret + "\n")
            key_file.chmod(0o600)
        self.stdout.write(f"Demo tenant {tenant.id}, project {project.id}")
        self.stdout.write(f"API key: {secret}")
