"""config.settings.production: refuses to start with DEBUG on or a weak secret key, sets HSTS,
the SSL redirect and secure cookies through documented variables, `check --deploy` is clean,
and an error never shows a technical page. Each case is a real `manage.py` process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = "k3y-" + "x7Qp9zL2mW" * 6  # 64 characters, not guessable from the settings

# What the README's production section asks an operator to set.
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": GOOD_KEY,
    "ALLOWED_HOSTS": "api.example.com",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_documented_variables():
    proc = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout


@pytest.mark.parametrize("debug", ["1", "true", "on"])
def test_production_refuses_to_start_with_debug_on(debug):
    proc = manage("check", **PRODUCTION, DJANGO_DEBUG=debug)

    assert proc.returncode != 0
    assert "DJANGO_DEBUG must be off in production" in proc.stderr


@pytest.mark.parametrize("key", ["", "x", "a" * 49, "ab" * 30])
def test_production_refuses_a_short_or_trivial_secret_key(key):
    proc = manage("check", **{**PRODUCTION, "DJANGO_SECRET_KEY": key})

    assert proc.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in proc.stderr


_SHOW = (
    "from django.conf import settings as s; "
    "print(s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, "
    "s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER, s.DEBUG)"
)


def test_security_settings_default_on_and_follow_their_variables():
    on = manage("shell", "-c", _SHOW, **PRODUCTION)
    off = manage(
        "shell",
        "-c",
        _SHOW,
        **PRODUCTION,
        DJANGO_SECURE_HSTS_SECONDS="0",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SECURE_COOKIES="false",
    )

    assert on.stdout.strip().splitlines()[-1].split() == [
        "31536000",
        "True",
        "True",
        "True",
        "('HTTP_X_FORWARDED_PROTO',",
        "'https')",
        "False",
    ], on.stderr
    assert off.stdout.strip().splitlines()[-1].split()[:4] == ["0", "False", "False", "False"], (
        off.stderr
    )


_ERROR_PAGE = """
from django.test import Client
from django.urls import path
import config.urls as urls

def boom(request):
    raise RuntimeError("secret-in-traceback")

# first: the API's catch-all (any other path under /api/ is a JSON 404) would answer before
urls.urlpatterns.insert(0, path("boom/", boom))
urls.urlpatterns.insert(0, path("api/v1/boom/", boom))
client = Client(raise_request_exception=False, SERVER_NAME="api.example.com")
for url in ("/boom/", "/api/v1/boom/"):
    r = client.get(url, secure=True)
    print(r.status_code, r["Content-Type"], b"secret-in-traceback" in r.content,
          b"Traceback" in r.content)
"""


def test_an_error_never_shows_a_technical_page():
    proc = manage("shell", "-c", _ERROR_PAGE, **PRODUCTION)

    lines = proc.stdout.strip().splitlines()[-2:]
    assert lines == [
        "500 text/html; charset=utf-8 False False",
        "500 application/json False False",
    ], proc.stdout + proc.stderr
