"""Sessions over REST: validate → one service → serialize."""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from common.api.schema import comma_list_parameter, errors
from common.api.viewsets import TenantScopedViewSet
from sessions_app import selectors, spawn, summaries, transitions
from sessions_app.api.filters import SessionFilter
from sessions_app.api.serializers import (
    SessionChildSerializer,
    SessionCreateSerializer,
    SessionFailSerializer,
    SessionInterventionSerializer,
    SessionSerializer,
    SessionSettleResultSerializer,
    SessionSpawnSerializer,
    SessionSummaryInSerializer,
    SessionSummaryResultSerializer,
    SessionSummarySerializer,
    SessionWithEdgeSerializer,
    TurnSettleSerializer,
)
from sessions_app.models import Session, SessionStatus
from threads import tenancy
from threads.api.views import validated
from threads.conversation.queue import queue_count

SESSION = {200: SessionSerializer}
WITH_EDGE = {201: SessionWithEdgeSerializer}
TRANSITION_CONFLICTS = ("illegal_transition", "thread_archived")


def _transition_schema(
    summary: str,
    request=None,
    conflicts=TRANSITION_CONFLICTS,
    hydrates: bool = False,
    response=SessionSerializer,
) -> dict:
    responses = errors(404, body=request is not None, conflicts=conflicts, hydrates=hydrates)
    return {"summary": summary, "request": request, "responses": {200: response, **responses}}


def session_response(session: Session, status_code: int = 200) -> Response:
    return Response(SessionSerializer(session).data, status=status_code)


def with_edge_response(session, subsession) -> Response:
    return Response(
        SessionWithEdgeSerializer({"session": session, "subsession": subsession}).data,
        status=status.HTTP_201_CREATED,
    )


@extend_schema_view(
    list=extend_schema(
        summary="List sessions",
        parameters=[
            OpenApiParameter(
                "thread",
                {"type": "string", "maxLength": 20},
                description="Only this thread's sessions.",
            ),
            comma_list_parameter(
                "status", SessionStatus.values, "One status or a comma list, e.g. `idle,active`."
            ),
        ],
        responses={200: SessionSerializer(many=True), **errors(400)},
    ),
    retrieve=extend_schema(summary="Get a session", responses={**SESSION, **errors(404)}),
    create=extend_schema(
        summary="Create a session (idle, owner_version 0)",
        request=SessionCreateSerializer,
        responses={201: SessionSerializer, **errors(404, body=True, conflicts=["thread_archived"])},
    ),
)
class SessionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Session.objects.all()
    serializer_class = SessionSerializer
    filterset_class = SessionFilter
    http_method_names = ["get", "post", "head", "options"]

    def scope_queryset(self, queryset):
        return queryset.select_related("workspace")

    def create(self, request: Request) -> Response:
        data = validated(SessionCreateSerializer, request.data)
        session = transitions.session_create(
            tenant=self.tenant, thread_id=data["thread"], actor=data["actor"]
        )
        return session_response(session, status.HTTP_201_CREATED)

    # --- Turns and status changes ------------------------------------------------------

    @extend_schema(**_transition_schema("Start a turn (idle → active)", hydrates=True))
    @action(detail=True, methods=["post"], url_path="turns/start", url_name="turns-start")
    def turns_start(self, request: Request, pk: str) -> Response:
        return session_response(transitions.session_turn_start(session=self.get_object()))

    @extend_schema(
        **_transition_schema(
            "Settle a turn with its usage (active → idle)",
            TurnSettleSerializer,
            response=SessionSettleResultSerializer,
        )
    )
    @action(detail=True, methods=["post"], url_path="turns/settle", url_name="turns-settle")
    def turns_settle(self, request: Request, pk: str) -> Response:
        session = self.get_object()
        data = validated(TurnSettleSerializer, request.data)
        usage = transitions.Usage(**data["usage"])
        session = transitions.session_turn_settle(session=session, usage=usage)
        # How many steering messages are still queued: the runtime's cue for the next turn.
        session.queued_messages = queue_count(thread=session.thread)
        return Response(SessionSettleResultSerializer(session).data)

    @extend_schema(**_transition_schema("Ask a human (active → awaiting_hitl)"))
    @action(detail=True, methods=["post"], url_path="hitl/request", url_name="hitl-request")
    def hitl_request(self, request: Request, pk: str) -> Response:
        return session_response(transitions.session_hitl_request(session=self.get_object()))

    @extend_schema(**_transition_schema("The human answered (awaiting_hitl → active)"))
    @action(detail=True, methods=["post"], url_path="hitl/resolve", url_name="hitl-resolve")
    def hitl_resolve(self, request: Request, pk: str) -> Response:
        return session_response(transitions.session_hitl_resolve(session=self.get_object()))

    @extend_schema(
        **_transition_schema("Fail a session (any status but archived)", SessionFailSerializer)
    )
    @action(detail=True, methods=["post"])
    def fail(self, request: Request, pk: str) -> Response:
        session = self.get_object()
        data = validated(SessionFailSerializer, request.data)
        return session_response(transitions.session_fail(session=session, reason=data["reason"]))

    @extend_schema(**_transition_schema("Archive a session (idle|failed; disposes its workspace)"))
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str) -> Response:
        return session_response(transitions.session_archive(session=self.get_object()))

    @extend_schema(
        **_transition_schema(
            "Close a broadcast (awaiting_merge → idle)",
            conflicts=("illegal_transition", "children_running", "thread_archived"),
        )
    )
    @action(detail=True, methods=["post"])
    def merge(self, request: Request, pk: str) -> Response:
        return session_response(summaries.session_merge(session=self.get_object()))

    # --- Children ----------------------------------------------------------------------

    @extend_schema(
        summary="Spawn a child agent session (capacity caps; compensating rollback)",
        request=SessionSpawnSerializer,
        responses={
            **WITH_EDGE,
            **errors(
                404,
                503,
                body=True,
                conflicts=[
                    "illegal_transition",
                    "capacity_exceeded",
                    "thread_archived",
                    "lock_expired",
                ],
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def spawn(self, request: Request, pk: str) -> Response:
        session = self.get_object()
        data = validated(SessionSpawnSerializer, request.data)
        tenancy.workspace_backend_require_configured(data.get("workspace_backend"))
        child, edge = spawn.session_spawn(
            session=session,
            actor=data["actor"],
            workspace_backend=data.get("workspace_backend"),
        )
        return with_edge_response(child, edge)

    @extend_schema(
        summary="The session's sub-sessions, each with its child session",
        filters=False,  # the list filters of GET /sessions/ do not apply here
        responses={200: SessionChildSerializer(many=True), **errors(400, 404)},
    )
    @action(detail=True, methods=["get"])
    def children(self, request: Request, pk: str) -> Response:
        session = self.get_object()
        page = self.paginate_queryset(selectors.session_children(session=session))
        return self.get_paginated_response(SessionChildSerializer(page, many=True).data)

    @extend_schema(
        summary="Start an intervention (a child session on an intervention edge)",
        request=SessionInterventionSerializer,
        responses={
            **WITH_EDGE,
            **errors(
                404,
                body=True,
                conflicts=[
                    "illegal_transition",
                    "artifact_ref_cycle",
                    "intervention_depth_exceeded",
                    "thread_archived",
                ],
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def interventions(self, request: Request, pk: str) -> Response:
        session = self.get_object()
        data = validated(SessionInterventionSerializer, request.data)
        child, edge = summaries.session_intervene(
            session=session, actor=data["actor"], prev_summary_id=data.get("prev_summary")
        )
        return with_edge_response(child, edge)

    @extend_schema(
        summary="Record the session's summary (active|locked|awaiting_merge → idle)",
        request=SessionSummaryInSerializer,
        responses={
            201: SessionSummaryResultSerializer,
            200: OpenApiResponse(
                SessionSummaryResultSerializer, description="The same summary again."
            ),
            **errors(
                404,
                body=True,
                conflicts=["already_summarized", "illegal_transition", "thread_archived"],
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def summary(self, request: Request, pk: str) -> Response:
        session = self.get_object()
        data = validated(SessionSummaryInSerializer, request.data)
        summary_in = summaries.SummaryIn(
            outcome_status=data["outcome"]["status"],
            outcome_verdict=data["outcome"].get("verdict", ""),
            agent_summary=data["agent_summary"],
            key_decisions=tuple(data["key_decisions"]),
            deliverables=tuple(data["deliverables"]),
        )
        summary, created = summaries.session_summarize(session=session, summary=summary_in)
        session.refresh_from_db()
        body = {
            "summary": SessionSummarySerializer(summary).data,
            "session": SessionSerializer(session).data,
        }
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
