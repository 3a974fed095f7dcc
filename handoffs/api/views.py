"""Handoffs over REST: validate → one service → serialize."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response

from common.api.schema import errors
from common.api.serializers import validator
from common.api.viewsets import TenantScopedViewSet
from handoffs import selectors, services
from handoffs.api.serializers import (
    HandoffCreateSerializer,
    HandoffSerializer,
    handoff_representation,
)
from handoffs.models import Handoff
from threads import tenancy

# Made once (common.api.serializers.validator): building the fields was a tenth of a
# handoff's CPU.
_validate_create = validator(HandoffCreateSerializer)


@extend_schema_view(
    retrieve=extend_schema(
        summary="Get a handoff (every recipient; a broadcast's id or any of its rows' ids)",
        responses={200: HandoffSerializer, **errors(404)},
    ),
    create=extend_schema(
        summary="Hand a session off to one recipient (single) or several (broadcast)",
        request=HandoffCreateSerializer,
        responses={
            201: HandoffSerializer,
            **errors(
                404,
                503,
                body=True,
                conflicts=[
                    "thread_archived",
                    "session_not_idle",
                    "capacity_exceeded",
                    "version_conflict",
                    "lock_expired",
                ],
            ),
        },
    ),
)
class HandoffViewSet(mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Handoff.objects.all()
    serializer_class = HandoffSerializer
    http_method_names = ["get", "post", "head", "options"]

    def create(self, request: Request) -> Response:
        data = _validate_create(request.data)
        tenancy.workspace_backend_require_configured(data.get("workspace_backend"))
        result = services.handoff_execute(
            tenant=self.tenant,
            mode=data["mode"],
            source_session_id=data["source_session"],
            expected_owner_version=data["expected_owner_version"],
            recipients=data["recipients"],
            workspace_backend=data.get("workspace_backend"),
        )
        return Response(handoff_representation(result.handoffs), status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, pk: str) -> Response:
        rows = selectors.handoff_group(handoff=self.get_object())
        return Response(handoff_representation(rows))
