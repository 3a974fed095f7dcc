import json

from django.core.management.base import BaseCommand

from threads.services import tenant_create


class Command(BaseCommand):
    help = (
        "Create a tenant with its first API key; the key is printed on the last line (shown once)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--json", action="store_true", help='Print {"tenant": …, "api_key": …}.'
        )

    def handle(self, *args, name, json: bool = False, **options):
        tenant, secret = tenant_create(name=name)
        if json:
            self.stdout.write(_json({"tenant": tenant.id, "name": tenant.name, "api_key": secret}))
            return
        self.stdout.write(f"Created tenant {tenant.id} ({tenant.name}). Its API key, shown once:")
        self.stdout.write(secret)


def _json(data) -> str:
    return json.dumps(data)
