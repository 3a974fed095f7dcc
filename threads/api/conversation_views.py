"""Compaction, cache warming and the steering queue over REST, under /threads/{id}/.

A viewset of its own (registered on the same `threads` prefix) rather than more actions on
ThreadViewSet: it derives from TenantScopedViewSet, so the thread lookup is tenant-scoped
(another tenant's thread is a 404 on every endpoint here) exactly as there.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from common.api.pagination import CURSOR_PATTERN, CursorPagination, limit_schema, parse_limit
from common.api.schema import errors
from common.api.viewsets import TenantScopedViewSet
from common.errors import NotFound
from threads.api.conversation_serializers import (
    CompactionPageSerializer,
    CompactionSerializer,
    CompactRequestSerializer,
    QueuedMessageSerializer,
    QueueDrainSerializer,
    QueueEnqueueSerializer,
    QueuePageSerializer,
    WarmResultSerializer,
)
from threads.api.serializers import MessagePageSerializer
from threads.api.views import validated
from threads.conversation import compaction, queue, warming
from threads.models import Compaction, Thread

COMPACTION_ID = r"(?P<compaction_id>cmp_[0-9a-z]{1,64})"
# Any plausible id answers 204 when unknown; the class keeps NUL and the like out of SQL.
QUEUED_ID = r"(?P<item_id>[0-9A-Za-z_.-]{1,128})"
PAGE_PARAMS = [
    OpenApiParameter(
        "cursor",
        {"type": "string", "pattern": CURSOR_PATTERN},
        description="The `next` of the previous page.",
    ),
    OpenApiParameter("limit", limit_schema(), description="1 to 1000 (default 100)."),
]
# Pages of messages continue after a seq: their cursor is that seq.
SEQ_PAGE_PARAMS = [
    OpenApiParameter(
        "cursor",
        {"type": "string", "pattern": r"^[0-9]{1,18}$"},
        description="The `next` of the previous page (a seq).",
    ),
    PAGE_PARAMS[1],
]


class CompactionPagination(CursorPagination):
    ordering = ("created_at", "id")


class QueuePagination(CursorPagination):
    ordering = ("queued_at", "id")


class ThreadConversationViewSet(TenantScopedViewSet):
    queryset = Thread.objects.all()
    serializer_class = CompactionSerializer  # each action names its own shapes
    pagination_class = None
    http_method_names = ["get", "post", "delete", "head", "options"]

    def _paginate(self, paginator_class, queryset, serializer_class) -> Response:
        paginator = paginator_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)

    # --- Compaction --------------------------------------------------------------------

    @extend_schema(
        summary="Compact the thread's history (runs in the background)",
        request=CompactRequestSerializer,
        responses={
            202: CompactionSerializer,
            **errors(
                404,
                body=True,
                conflicts=(
                    "thread_archived",
                    "thread_generating",
                    "too_short",
                    "nothing_to_compact",
                    "compaction_in_progress",
                ),
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def compact(self, request: Request, pk: str) -> Response:
        thread = self.get_object()
        data = validated(CompactRequestSerializer, request.data)
        created = compaction.compaction_request(thread=thread, keep_last=data.get("keep_last"))
        return Response(CompactionSerializer(created).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="List the thread's compactions (oldest first)",
        parameters=PAGE_PARAMS,
        responses={200: CompactionPageSerializer, **errors(400, 404)},
    )
    @action(detail=True, methods=["get"])
    def compactions(self, request: Request, pk: str) -> Response:
        thread = self.get_object()
        queryset = Compaction.objects.filter(thread=thread)
        return self._paginate(CompactionPagination, queryset, CompactionSerializer)

    def _compaction(self, compaction_id: str) -> Compaction:
        thread = self.get_object()
        found = Compaction.objects.filter(thread=thread, pk=compaction_id).first()
        if found is None:
            raise NotFound("Compaction not found.")
        return found

    @extend_schema(
        operation_id="v1_threads_compactions_detail",
        summary="Get one compaction",
        responses={200: CompactionSerializer, **errors(404)},
    )
    @action(detail=True, methods=["get"], url_path=f"compactions/{COMPACTION_ID}")
    def compaction_detail(self, request: Request, pk: str, compaction_id: str) -> Response:
        return Response(CompactionSerializer(self._compaction(compaction_id)).data)

    @extend_schema(
        summary="The original messages a compaction archived, in seq order",
        parameters=SEQ_PAGE_PARAMS,
        responses={
            200: MessagePageSerializer,
            **errors(400, 404, 503, conflicts=("compaction_not_succeeded",)),
        },
    )
    @action(detail=True, methods=["get"], url_path=f"compactions/{COMPACTION_ID}/originals")
    def originals(self, request: Request, pk: str, compaction_id: str) -> Response:
        found = self._compaction(compaction_id)
        raw_after = request.query_params.get("cursor", "0")
        # As SEQ_PAGE_PARAMS publishes: a seq of 1–18 ASCII digits.
        if not (raw_after.isascii() and raw_after.isdigit() and len(raw_after) <= 18):
            raise ValidationError({"cursor": ["Invalid cursor."]})
        limit = parse_limit(request.query_params.get("limit"), default=100)
        after = int(raw_after)
        messages = [
            m for m in compaction.compaction_originals(compaction=found) if m["seq"] > after
        ]
        page = messages[:limit]
        more = len(messages) > limit
        return Response({"results": page, "next": str(page[-1]["seq"]) if more and page else None})

    # --- Warming -----------------------------------------------------------------------

    @extend_schema(
        summary="Warm the provider's prompt cache for this thread now",
        request=None,
        responses={
            200: WarmResultSerializer,
            **errors(
                404,
                422,
                503,
                conflicts=("thread_archived", "thread_generating", "no_history", "nothing_to_warm"),
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def warm(self, request: Request, pk: str) -> Response:
        result = warming.warm_now(thread=self.get_object())
        return Response(WarmResultSerializer(result.as_dict()).data)

    # --- Steering queue ----------------------------------------------------------------

    @extend_schema(
        methods=["GET"],
        summary="List the queued steering messages (oldest first)",
        parameters=PAGE_PARAMS,
        responses={200: QueuePageSerializer, **errors(400, 404)},
    )
    @extend_schema(
        methods=["POST"],
        summary="Queue a steering message",
        request=QueueEnqueueSerializer,
        responses={
            201: QueuedMessageSerializer,
            **errors(404, body=True, conflicts=("thread_archived",)),
        },
    )
    @action(detail=True, methods=["get", "post"])
    def queue(self, request: Request, pk: str) -> Response:
        thread = self.get_object()
        if request.method == "GET":
            return self._paginate(
                QueuePagination, queue.queue_list(thread=thread), QueuedMessageSerializer
            )
        data = validated(QueueEnqueueSerializer, request.data)
        item = queue.queue_enqueue(thread=thread, content=data["content"])
        return Response(QueuedMessageSerializer(item).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Take every queued steering message, atomically",
        request=None,
        responses={200: QueueDrainSerializer, **errors(404, conflicts=("thread_archived",))},
    )
    @action(detail=True, methods=["post"], url_path="queue/drain")
    def queue_drain(self, request: Request, pk: str) -> Response:
        drained = queue.queue_drain(thread=self.get_object())
        return Response(QueueDrainSerializer({"items": drained.items, "text": drained.text}).data)

    @extend_schema(
        summary="Cancel a queued steering message (204 also when it is already gone)",
        request=None,
        responses={204: None, **errors(404, conflicts=("thread_archived",))},
    )
    @action(detail=True, methods=["delete"], url_path=f"queue/{QUEUED_ID}")
    def queue_item(self, request: Request, pk: str, item_id: str) -> Response:
        queue.queue_cancel(thread=self.get_object(), item_id=item_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
