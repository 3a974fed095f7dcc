"""Tenants, their API keys and projects: who may call the API, and the top of every tenant's
data. Keys are stored as SHA-256 hashes; the secret is shown once."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from common.errors import InvalidInput
from threads.models import ApiKey, Project, Tenant, WorkspaceBackend

API_KEY_PREFIX = "tl_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(*, tenant: Tenant, name: str = "") -> tuple[ApiKey, str]:
    """A new key for `tenant`; returns (key, secret). The secret is not stored."""
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        tenant=tenant, name=name, prefix=secret[:10], secret_hash=_hash_secret(secret)
    )
    return api_key, secret


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke the key. This process forgets it at once; other processes within
    API_KEY_CACHE_SECONDS (see api_key_authenticate)."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at=None).update(revoked_at=timezone.now())
    _KEYS.pop(api_key.secret_hash, None)
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


# Authenticated keys by secret hash, per process: {hash: (valid until, key)}. Every API
# request authenticates, and the lookup was one round trip and ~7 % of an append's CPU; the
# price is that a revocation reaches other processes only when their entry expires.
_KEYS: dict[str, tuple[float, ApiKey]] = {}
_KEYS_MAX = 10_000


def api_key_cache_clear() -> None:
    """Forget every key this process trusts (the next request of each looks it up)."""
    _KEYS.clear()


def _active_key(secret_hash: str) -> ApiKey | None:
    ttl = settings.API_KEY_CACHE_SECONDS
    now = time.monotonic()
    cached = _KEYS.get(secret_hash) if ttl else None
    if cached is not None and cached[0] > now:
        return cached[1]
    # secret_hash is unique: a one-row slice, without the ORDER BY (Meta.ordering) that
    # first() would add.
    candidates = (
        ApiKey.objects.select_related("tenant")
        .filter(secret_hash=secret_hash, revoked_at=None)
        .order_by()
    )
    api_key = next(iter(candidates[:1]), None)
    if api_key is None:
        _KEYS.pop(secret_hash, None)
    elif ttl:
        if len(_KEYS) >= _KEYS_MAX:
            _KEYS.clear()
        _KEYS[secret_hash] = (now + ttl, api_key)
    return api_key


def api_key_authenticate(*, secret: str) -> ApiKey | None:
    """The active key with this secret, or None. Touches last_used_at at most once a minute
    (a conditional UPDATE, so a busy key costs one write a minute, not one per request)."""
    if not secret.startswith(API_KEY_PREFIX) or len(secret) > 128:
        return None
    api_key = _active_key(_hash_secret(secret))
    if api_key is None:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or api_key.last_used_at < now - LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).exclude(
            last_used_at__gte=now - LAST_USED_RESOLUTION
        ).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


@transaction.atomic
def tenant_create(*, name: str) -> tuple[Tenant, str]:
    """A tenant with its first API key; returns (tenant, secret)."""
    tenant = Tenant.objects.create(name=name)
    _, secret = api_key_create(tenant=tenant, name="default")
    return tenant, secret


def workspace_backend_require_configured(backend: str | None) -> None:
    """400 for a backend this server cannot provision, when it is configured (a project's
    default, a spawn's or handoff's choice) rather than a 503 at the first spawn: git-worktree
    needs WORKSPACE_GIT_REPO to name a directory. (Whether it is a repository with a commit
    is git's to say, at provisioning: a 503 with nothing left behind.)"""
    if backend != WorkspaceBackend.GIT_WORKTREE:
        return
    repo = settings.WORKSPACE_GIT_REPO
    if not repo or not os.path.isdir(repo):
        problem = "git-worktree needs WORKSPACE_GIT_REPO set on the server" + (
            f" ({repo} is not a directory)." if repo else "."
        )
        raise InvalidInput(problem, fields={"workspace_backend": [problem]})


def project_create(*, tenant: Tenant, **fields: Any) -> Project:
    workspace_backend_require_configured(fields.get("workspace_backend"))
    return Project.objects.create(tenant=tenant, **fields)


def project_update(*, project: Project, **fields: Any) -> Project:
    if not fields:
        return project
    workspace_backend_require_configured(fields.get("workspace_backend"))
    fields["updated_at"] = timezone.now()
    Project.objects.filter(pk=project.pk).update(**fields)
    project.refresh_from_db()
    return project
