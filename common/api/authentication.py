"""request.user of an API call: the tenant and key it authenticated as (threads.api.authentication
sets it; the tenant-scoped base classes read it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from threads.models import ApiKey, Tenant


@dataclass(frozen=True)
class TenantPrincipal:
    """request.user for API calls: who is asking, on behalf of which tenant."""

    tenant: Tenant
    api_key: ApiKey
    is_authenticated: bool = True
    is_anonymous: bool = False

    @property
    def pk(self) -> str:
        return self.api_key.pk
