"""API keys are trusted per process for API_KEY_CACHE_SECONDS: a revocation made elsewhere
(another process, straight in the database) takes at most that long to bite here."""

from __future__ import annotations

from django.utils import timezone

from threads import tenancy
from threads.models import ApiKey


def revoke_elsewhere(api) -> None:
    # As another process would: the row changes, this process's cache does not hear of it.
    ApiKey.objects.filter(tenant=api.tenant).update(revoked_at=timezone.now())


def test_a_key_revoked_elsewhere_works_until_its_cache_entry_expires(api, settings):
    settings.API_KEY_CACHE_SECONDS = 5
    assert api.get("/api/v1/threads").status_code == 200  # cached now
    revoke_elsewhere(api)
    assert api.get("/api/v1/threads").status_code == 200
    tenancy.api_key_cache_clear()  # as when the entry expires
    assert api.get("/api/v1/threads").status_code == 401


def test_without_the_cache_a_revocation_bites_on_the_next_request(api, settings):
    settings.API_KEY_CACHE_SECONDS = 0
    assert api.get("/api/v1/threads").status_code == 200
    revoke_elsewhere(api)
    assert api.get("/api/v1/threads").status_code == 401


def test_revoking_through_the_service_bites_at_once_in_this_process(api, settings):
    settings.API_KEY_CACHE_SECONDS = 60
    assert api.get("/api/v1/threads").status_code == 200
    tenancy.api_key_revoke(api_key=ApiKey.objects.get(tenant=api.tenant))
    assert api.get("/api/v1/threads").status_code == 401
