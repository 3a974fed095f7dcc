"""`manage.py create_api_key TENANT_ID`: another key for a tenant, printed once (last line)."""

import json

from django.core.management.base import BaseCommand, CommandError

from threads.models import ApiKey, Tenant
from threads.tenancy import api_key_create


class Command(BaseCommand):
    help = "Create another API key for a tenant; the key is printed on the last line (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("tenant_id")
        parser.add_argument("--name", default="", help="A label, to recognise the key later.")
        parser.add_argument(
            "--json", action="store_true", help='Print {"tenant": …, "key_id": …, "api_key": …}.'
        )

    def handle(self, *args, tenant_id: str, name: str, **options):
        max_length = ApiKey._meta.get_field("name").max_length
        if len(name) > max_length:
            raise CommandError(f"The key name must be at most {max_length} characters.")
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is None:
            raise CommandError(f"No tenant {tenant_id!r}.")
        api_key, secret = api_key_create(tenant=tenant, name=name)
        if options["json"]:
            self.stdout.write(
                json.dumps({"tenant": tenant.id, "key_id": api_key.id, "api_key": secret})
            )
            return
        self.stdout.write(f"Created key {api_key.id} for {tenant.id}. Shown once:")
        self.stdout.write(secret)
