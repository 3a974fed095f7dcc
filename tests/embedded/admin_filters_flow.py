"""Run by tests/embedded/test_sqlite.py in its own process: every admin filter and facet on
the embedded default (SQLite), with a row of each kind so each choice runs a real query.
Prints one JSON line: what was requested and what failed."""

from __future__ import annotations

import json
import os
import sys

import django


def main() -> None:
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment

    from tests.admin_filters import click_every_filter
    from tests.test_admin_filters import one_of_everything

    setup_test_environment()  # responses carry their context (the changelist's filters)
    call_command("migrate", verbosity=0)
    one_of_everything()
    user = get_user_model().objects.create_superuser("op", "op@example.com", "pw")
    client = Client(raise_request_exception=False)
    client.force_login(user)
    requested, failed = click_every_filter(client)
    sys.stdout.write(json.dumps({"requested": len(requested), "failed": failed}) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    main()
