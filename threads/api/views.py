"""Projects, threads, messages and events over REST: validate → one service → serialize."""

from __future__ import annotations

from django.db import connection
from django.http import HttpResponse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from common.api.etags import expected_version
from common.api.pagination import CursorPagination, limit_schema, parse_limit
from common.api.schema import ETAG_HEADER, IF_MATCH_HEADER, errors
from common.api.serializers import representer, validator
from common.api.viewsets import TenantScopedViewSet
from threads import history, selectors, services, tenancy
from threads.api.filters import EventFilter, ThreadFilter
from threads.api.parameters import (
    FIELDS_PARAM,
    LIFECYCLE_PARAM,
    METADATA_FILTER_DOC,
    METADATA_PARAM,
    Q_PARAM,
)
from threads.api.serializers import (
    AppendResultSerializer,
    EventSerializer,
    ForkSerializer,
    MessageBatchSerializer,
    MessagePageSerializer,
    MessageReplaceSerializer,
    ProjectSerializer,
    ProjectWriteSerializer,
    StateSerializer,
    ThreadCreateSerializer,
    ThreadSerializer,
    ThreadSparseSerializer,
    ThreadUpdateSerializer,
    TruncateResultSerializer,
    TruncateSerializer,
)
from threads.models import Event, Project, Thread, Tier
from threads.storage import pages, tiers


def validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- Projects --------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List projects", responses={200: ProjectSerializer(many=True), **errors(400)}
    ),
    retrieve=extend_schema(
        summary="Get a project", responses={200: ProjectSerializer, **errors(404)}
    ),
    create=extend_schema(
        summary="Create a project",
        request=ProjectWriteSerializer,
        responses={201: ProjectSerializer, **errors(body=True)},
    ),
    partial_update=extend_schema(
        summary="Edit a project",
        request=ProjectWriteSerializer(partial=True),
        responses={200: ProjectSerializer, **errors(404, body=True)},
    ),
)
class ProjectViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Project.objects.all()
    serializer_class = ProjectSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]

    def create(self, request: Request) -> Response:
        data = validated(ProjectWriteSerializer, request.data)
        project = tenancy.project_create(tenant=self.tenant, **data)
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        project = self.get_object()
        data = validated(ProjectWriteSerializer, request.data, partial=True)
        project = tenancy.project_update(project=project, **data)
        return Response(ProjectSerializer(project).data)


# --- Threads ---------------------------------------------------------------------------


_thread_representation = representer(ThreadSerializer)
_validate_batch = validator(MessageBatchSerializer)
_validate_create = validator(ThreadCreateSerializer)
_APPEND_REF = ("id", "tenant_id", "tier")
# What a page read uses of the thread row (pages.messages_page_json: the tier, the cache's
# version, the flush seqlock, the fill's size check); the row's JSON columns are not parsed.
_PAGE_FIELDS = ("tier", "history_version", "last_flushed_at", "message_count", "token_estimate")


def thread_response(thread: Thread, status_code: int = 200) -> Response:
    return Response(
        _thread_representation(thread),
        status=status_code,
        headers={"ETag": f'"{thread.version}"'},
    )


THREAD = {200: ThreadSerializer}
# What the message endpoints read of the thread before calling the history services.
HISTORY_CALL_COLUMNS = (
    "id",
    "tenant_id",
    "status",
    "tier",
    "history_version",
    "message_count",
    "token_estimate",
    "last_flushed_at",
)


@extend_schema_view(
    list=extend_schema(
        summary="List threads",
        description=METADATA_FILTER_DOC,
        parameters=[FIELDS_PARAM, LIFECYCLE_PARAM, Q_PARAM, METADATA_PARAM],
        responses={200: ThreadSparseSerializer(many=True), **errors(400)},
    ),
    retrieve=extend_schema(
        summary="Get a thread (ETag: its version)",
        parameters=[ETAG_HEADER],
        responses={**THREAD, **errors(404)},
    ),
    create=extend_schema(
        summary="Create a thread",
        request=ThreadCreateSerializer,
        parameters=[ETAG_HEADER],
        responses={201: ThreadSerializer, **errors(404, body=True)},
    ),
    partial_update=extend_schema(
        summary="Edit a thread (honours If-Match)",
        request=ThreadUpdateSerializer,
        parameters=[IF_MATCH_HEADER, ETAG_HEADER],
        responses={**THREAD, **errors(404, 412, body=True, conflicts=["thread_archived"])},
    ),
    destroy=extend_schema(
        summary="Delete a thread",
        responses={204: None, **errors(404, conflicts=["thread_not_empty"])},
    ),
)
class ThreadViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Thread.objects.all()
    serializer_class = ThreadSerializer
    filterset_class = ThreadFilter
    pagination_class = CursorPagination
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def scope_queryset(self, queryset):
        if self.action == "list":
            queryset = queryset.filter(
                selectors.metadata_filter(self.request.query_params, vendor=connection.vendor)
            )
        if self.action in ("messages", "truncate"):
            # History calls need the tier and versions only (writes re-read under the lock).
            return queryset.only(*HISTORY_CALL_COLUMNS)
        # The state slice (up to MAX_STATE_BYTES of JSON) is only read by its own endpoint;
        # services that need it re-read the row under their lock.
        return queryset if self.action == "state" else queryset.defer("state")

    def get_serializer(self, *args, **kwargs):
        if self.action == "list":
            raw = self.request.query_params.get("fields")
            if raw:
                kwargs["fields"] = raw.split(",")  # as FIELDS_PARAM's pattern: no spaces
        return super().get_serializer(*args, **kwargs)

    def retrieve(self, request: Request, pk: str) -> Response:
        return thread_response(self.get_object())

    def create(self, request: Request) -> Response:
        data = _validate_create(request.data)
        thread = services.thread_create(
            tenant=self.tenant,
            project_id=data["project"],
            title=data["title"],
            metadata=data["metadata"],
        )
        return thread_response(thread, status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        thread = self.get_object()
        changes = validated(ThreadUpdateSerializer, request.data)
        # The tag is checked against the version read here; the conditional UPDATE on that
        # version then makes the check hold until the write (a concurrent edit → 412).
        expected = expected_version(request.headers.get("If-Match"), current=thread.version)
        thread = services.thread_update(thread=thread, changes=changes, expected_version=expected)
        return thread_response(thread)

    def destroy(self, request: Request, pk: str) -> Response:
        services.thread_delete(thread=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Archive a thread (read-only afterwards)",
        request=None,
        parameters=[ETAG_HEADER],
        responses={**THREAD, **errors(404, conflicts=["thread_not_empty"])},
    )
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str) -> Response:
        return thread_response(services.thread_archive(thread=self.get_object()))

    @extend_schema(
        summary="Close the conversation (lifecycle closed, warming off)",
        request=None,
        parameters=[ETAG_HEADER],
        responses={**THREAD, **errors(404, conflicts=["thread_archived"])},
    )
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str) -> Response:
        return thread_response(services.thread_close(thread=self.get_object()))

    @extend_schema(
        summary="Re-open a closed conversation (lifecycle idle)",
        request=None,
        parameters=[ETAG_HEADER],
        responses={**THREAD, **errors(404, conflicts=["thread_archived"])},
    )
    @action(detail=True, methods=["post"])
    def open(self, request: Request, pk: str) -> Response:
        return thread_response(services.thread_open(thread=self.get_object()))

    @extend_schema(
        summary="Fork a thread (messages and state copied)",
        request=ForkSerializer,
        parameters=[ETAG_HEADER],
        responses={201: ThreadSerializer, **errors(404, body=True, hydrates=True)},
    )
    @action(detail=True, methods=["post"])
    def fork(self, request: Request, pk: str) -> Response:
        thread = self.get_object()
        data = validated(ForkSerializer, request.data)
        return thread_response(
            services.thread_fork(thread=thread, title=data.get("title")), status.HTTP_201_CREATED
        )

    @extend_schema(
        methods=["GET"],
        summary="Get the state slice",
        responses={200: StateSerializer, **errors(404)},
    )
    @extend_schema(
        methods=["PUT"],
        summary="Replace the state slice",
        request=StateSerializer,
        responses={
            200: StateSerializer,
            **errors(404, body=True, conflicts=["thread_archived"], hydrates=True),
        },
    )
    @action(detail=True, methods=["get", "put"])
    def state(self, request: Request, pk: str) -> Response:
        thread = self.get_object()
        if request.method == "PUT":
            data = validated(StateSerializer, request.data)
            thread = services.thread_state_set(thread=thread, state=data["state"])
        return Response({"state": thread.state})

    @extend_schema(
        methods=["GET"],
        summary="List messages in seq order",
        parameters=[
            OpenApiParameter(
                "after_seq",
                {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
                description="Only messages after this seq.",
            ),
            OpenApiParameter(
                "cursor",
                {"type": "string", "pattern": r"^[0-9]{1,18}$"},
                description="The `next` of the previous page (a seq; wins over after_seq).",
            ),
            OpenApiParameter("limit", limit_schema(), description="1 to 1000 (default 100)."),
        ],
        responses={200: MessagePageSerializer, **errors(400, 404, hydrates=True)},
    )
    @extend_schema(
        methods=["POST"],
        summary="Append messages (idempotent per message id)",
        request=MessageBatchSerializer,
        responses={
            201: AppendResultSerializer,
            200: OpenApiResponse(
                AppendResultSerializer, description="Every message was a duplicate."
            ),
            **errors(404, body=True, conflicts=["thread_archived", "thread_closed"], hydrates=True),
        },
    )
    @extend_schema(
        methods=["PUT"],
        summary="Replace the whole history",
        request=MessageReplaceSerializer,
        responses={
            200: AppendResultSerializer,
            **errors(404, body=True, conflicts=["thread_archived"], hydrates=True),
        },
    )
    @action(detail=True, methods=["get", "post", "put"])
    def messages(self, request: Request, pk: str) -> Response:
        if request.method == "POST":
            return self._append(request, pk)
        if request.method == "GET":
            return self._list_messages(request, self.get_object_only(*_PAGE_FIELDS))
        thread = self.get_object()
        data = validated(MessageReplaceSerializer, request.data)
        result = history.messages_replace(thread=thread, messages=data["messages"])
        return Response(AppendResultSerializer(result).data)

    def _append(self, request: Request, pk: str) -> Response:
        data = _validate_batch(request.data)
        # No get_object(): the append locks the row filtered by this tenant (another
        # tenant's thread is a 404 there), which saves a read of the whole row per append.
        # The instance carries only what the append reads (from_db skips every default).
        thread = Thread.from_db(None, _APPEND_REF, (pk, self.tenant.pk, Tier.HOT))
        result = history.messages_append(thread=thread, messages=data["messages"])
        code = status.HTTP_201_CREATED if result.appended else status.HTTP_200_OK
        body = {
            "appended": result.appended,
            "duplicates": result.duplicates,
            "messages": result.messages,  # [{id, seq}], as AppendResultSerializer describes
            "last_seq": result.last_seq,
        }
        return Response(body, status=code)

    def _list_messages(self, request: Request, thread: Thread) -> HttpResponse:
        # The cursor (a `next`) wins over after_seq; a bad value is blamed on the one used.
        params = request.query_params
        # What the schema publishes for both: 1–18 ASCII digits (never above 2**62), else a
        # 400 naming the bad one, even when the cursor wins and after_seq is not used.
        for name in ("after_seq", "cursor"):
            raw = params.get(name)
            if raw is not None and not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
                problem = (
                    "Invalid cursor." if name == "cursor" else "Must be a non-negative integer."
                )
                raise ValidationError({name: [problem]})
        raw_after = params.get("cursor") or params.get("after_seq") or "0"
        limit = parse_limit(request.query_params.get("limit"), default=100)
        page, next_seq = pages.messages_page_json(
            thread=thread, after_seq=int(raw_after), limit=limit
        )
        # The messages come as JSON already (from the Redis cache, or shaped once from the
        # rows): joined, not parsed and re-rendered.
        cursor = b"null" if next_seq is None else b'"%d"' % next_seq
        body = b'{"results":[' + b",".join(page) + b'],"next":' + cursor + b"}"
        return HttpResponse(body, content_type="application/json")

    @extend_schema(
        summary="Remove a message and everything after it",
        request=TruncateSerializer,
        responses={
            200: TruncateResultSerializer,
            **errors(404, body=True, conflicts=["thread_archived"], hydrates=True),
        },
    )
    @action(detail=True, methods=["post"], url_path="messages/truncate")
    def truncate(self, request: Request, pk: str) -> Response:
        thread = self.get_object()
        data = validated(TruncateSerializer, request.data)
        removed = history.messages_truncate(thread=thread, from_id=data["from_id"])
        return Response({"removed": removed})

    @extend_schema(
        summary="Move the thread to cold storage (tier cold)",
        request=None,
        parameters=[
            OpenApiParameter(
                "overwrite",
                bool,
                description="Replace a cold object another tool wrote since Threadline last "
                "read it (otherwise 409 cold_object_changed).",
            )
        ],
        responses={
            **THREAD,
            **errors(
                400, 404, 503, conflicts=["thread_generating", "thread_busy", "cold_object_changed"]
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def flush(self, request: Request, pk: str) -> Response:
        overwrite = request.query_params.get("overwrite", "false")
        if overwrite not in ("true", "false"):
            raise ValidationError({"overwrite": ["Must be true or false."]})
        thread = tiers.thread_flush(thread=self.get_object(), overwrite=overwrite == "true")
        return thread_response(thread)

    @extend_schema(
        summary="Bring the thread back from cold storage (tier hot)",
        request=None,
        responses={**THREAD, **errors(404, 503, conflicts=["thread_busy"])},
    )
    @action(detail=True, methods=["post"])
    def hydrate(self, request: Request, pk: str) -> Response:
        return thread_response(tiers.thread_hydrate(thread=self.get_object()))


# --- Events ----------------------------------------------------------------------------


class EventPagination(CursorPagination):
    ordering = ("id",)


@extend_schema_view(
    list=extend_schema(
        summary="The audit trail",
        parameters=[
            OpenApiParameter(
                "after", str, description="Only events after this event id (unknown: 404)."
            ),
            OpenApiParameter("kind", str, description="One kind or a comma list."),
        ],
        responses={200: EventSerializer(many=True), **errors(400, 404)},
    ),
)
class EventViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    queryset = Event.objects.all()
    serializer_class = EventSerializer
    filterset_class = EventFilter
    pagination_class = EventPagination

    def scope_queryset(self, queryset):
        return selectors.events_after(
            queryset=queryset,
            tenant_id=self.tenant.pk,
            after=self.request.query_params.get("after"),
        )
