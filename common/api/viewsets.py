"""Tenant scoping in one base class (after PostHog's TeamAndOrgViewSetMixin).

Every API viewset derives from TenantScopedViewSet. It owns get_queryset(): the queryset is
always filtered by the request's tenant, so another tenant's object is indistinguishable from
a missing one (404). Subclasses narrow the queryset with scope_queryset(); overriding
get_queryset() is refused at class creation so no view can forget the tenant filter.
"""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.generics import get_object_or_404
from rest_framework.viewsets import GenericViewSet

from common.api.authentication import TenantPrincipal
from common.api.parsers import refuse_unframed_body

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

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        refuse_unframed_body(request)
        # The query-string twin of LimitedJSONParser's check: PostgreSQL refuses NUL in any
        # text parameter, so a filter value carrying one would be a 500, not a 400.
        bad = sorted(k for k, v in request.query_params.lists() if "\x00" in k + "".join(v))
        if bad:
            raise ValidationError({name: ["Must not contain NUL characters."] for name in bad})

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

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        # DRF's get_object() runs the list filters too: `GET /threads/{id}/messages?status=x`
        # would turn an existing thread into a 404 (or a 400). They only narrow lists.
        if self.detail:
            return queryset
        return super().filter_queryset(queryset)

    def get_object_only(self, *fields: str):
        """get_object() with only `fields` of the row loaded (and the pk; another field is
        read on first access): for a call on a wide row that needs a few of its columns."""
        lookup = self.lookup_url_kwarg or self.lookup_field
        queryset = self.get_queryset().only(*fields)
        obj = get_object_or_404(queryset, **{self.lookup_field: self.kwargs[lookup]})
        self.check_object_permissions(self.request, obj)
        return obj
