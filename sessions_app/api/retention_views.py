"""Sub-session retention over REST: `POST /subsessions/{id}/archive` and `…/restore`."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from common.api.schema import errors
from common.api.viewsets import TenantScopedViewSet
from sessions_app import retention
from sessions_app.api.serializers import SubSessionSerializer
from sessions_app.models import SubSession


class SubSessionRetentionViewSet(TenantScopedViewSet):
    queryset = SubSession.objects.all()
    serializer_class = SubSessionSerializer
    http_method_names = ["post", "options"]

    @extend_schema(
        summary="Archive a finished sub-session to cold storage now",
        description=(
            "Idle, merged, merge_rejected or failed sub-sessions only: their bundle (metadata, "
            "messages, summary, workspace ref) is written to cold storage, then the "
            "sub-session is marked archived and its workspace disposed."
        ),
        request=None,
        responses={
            200: SubSessionSerializer,
            **errors(404, 503, conflicts=["not_archivable"]),
        },
    )
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str) -> Response:
        edge = retention.subsession_archive(subsession=self.get_object())
        return Response(SubSessionSerializer(edge).data)

    @extend_schema(
        summary="Restore an archived sub-session (back to idle)",
        request=None,
        responses={200: SubSessionSerializer, **errors(404, 503, conflicts=["not_archived"])},
    )
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str) -> Response:
        edge = retention.subsession_restore(subsession=self.get_object())
        return Response(SubSessionSerializer(edge).data)
