"""`manage.py create_tenant NAME`: a tenant with its first API key, printed once.

The key is the last line of the output (scripts can `| tail -n1`), or the `api_key` of
the JSON object with --json.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from threads.models import Tenant
from threads.tenancy import tenant_create


class Command(BaseCommand):
    help = (
        "Create a tenant with its first API key; the key is printed on the last line (shown once)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--json", action="store_true", help='Print {"tenant": …, "name": …, "api_key": …}.'
        )

    def handle(self, *args, name: str, **options):
        name = name.strip()
        max_length = Tenant._meta.get_field("name").max_length
        if not name or len(name) > max_length:
            raise CommandError(f"The tenant name must be 1 to {max_length} characters.")
        tenant, secret = tenant_create(name=name)
        if options["json"]:
            self.stdout.write(
                json.dumps({"tenant": tenant.id, "name": tenant.name, "api_key": secret})
            )
            return
        self.stdout.write(f"Created tenant {tenant.id} ({tenant.name}). Its API key, shown once:")
        self.stdout.write(secret)
