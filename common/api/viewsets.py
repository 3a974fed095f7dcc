"""Tenant scoping in one base class (after PostHog's TeamAndOrgViewSetMixin).

Every API viewset derives from TenantScopedViewSet. It owns get_queryset(): the queryset is
always filtered by the request's tenant, so another tenant's object is indistinguishable from
a missing one (404). Subclasses narrow the queryset with scope_queryset(); overriding
get_queryset() is refused at class creation so no view can forget the tenant filter.
"""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework.viewsets import GenericViewSet

from common.api.authentication import TenantPrincipal

ID_LOOKUP_REGEX = r"[a-z]{3}_[0-9a-z]{1,64}"


class TenantScopedViewSet(GenericViewSet):
    tenant_field = "tenant"
    lookup_value_regex = ID_LOOKUP_REGEX

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__} must not override get_queryset(); override scope_queryset() "
                "so the tenant filter cannot be lost."
            )

    @property
    def principal(self) -> TenantPrincipal:
        return self.request.user

    @property
    def tenant(self):
        return self.principal.tenant

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):  # schema generation has no tenant
            return queryset.none()
        return self.scope_queryset(queryset.filter(**{self.tenant_field: self.tenant}))

    def scope_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset
