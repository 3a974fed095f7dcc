"""Input and output shapes of the sessions API."""

from __future__ import annotations

from rest_framework import serializers

from common.api.serializers import ActorSerializer, StrictSerializer
from sessions_app.models import (
    AGENT_SUMMARY_MAX_CHARS,
    OutcomeStatus,
    Session,
    SubSession,
    Summary,
    Workspace,
)
from threads.models import WorkspaceBackend

MAX_TOKENS = 10**12


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: DRF's IntegerField also takes "12", 12.0 and true."""

    def to_internal_value(self, data):
        if type(data) is not int:
            self.fail("invalid")
        return super().to_internal_value(data)


# --- Output ----------------------------------------------------------------------------


class WorkspaceSerializer(serializers.ModelSerializer):
    # A plain string here: the choice set is named WorkspaceBackendEnum where it is written.
    backend = serializers.CharField(help_text="none, directory or git-worktree.")

    class Meta:
        model = Workspace
        fields = ("id", "backend", "status", "path", "branch", "created_at", "disposed_at")
        read_only_fields = fields


class SessionUsageSerializer(serializers.Serializer):
    input_tokens = serializers.IntegerField(source="last_input_tokens")
    cache_read_tokens = serializers.IntegerField(source="last_cache_read_tokens")
    cache_creation_tokens = serializers.IntegerField(source="last_cache_creation_tokens")
    output_tokens = serializers.IntegerField(source="last_output_tokens")


class SessionSerializer(serializers.ModelSerializer):
    current_actor = ActorSerializer(read_only=True, allow_null=True)
    previous_actors = ActorSerializer(many=True, read_only=True)
    workspace = WorkspaceSerializer(read_only=True, allow_null=True)
    usage = SessionUsageSerializer(source="*", read_only=True, help_text="The last settled turn's.")

    class Meta:
        model = Session
        fields = (
            "id",
            "thread",
            "project",
            "status",
            "current_actor",
            "previous_actors",
            "owner_version",
            "depth",
            "workspace",
            "lock_expires_at",
            "usage",
            "last_settled_at",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


class SessionSettleResultSerializer(SessionSerializer):
    """The answer to turns/settle: the session and how many steering messages are queued.

    A subclass, not an optional field of SessionSerializer: OpenAPI marks every read-only
    field required, so a field only one endpoint fills would break every other's schema."""

    queued_messages = serializers.IntegerField(
        read_only=True, help_text="Steering messages still queued for the next turn."
    )

    class Meta(SessionSerializer.Meta):
        fields = (*SessionSerializer.Meta.fields, "queued_messages")
        read_only_fields = fields


class SubSessionSerializer(serializers.ModelSerializer):
    class Meta:
        model = SubSession
        fields = (
            "id",
            "kind",
            "status",
            "parent",
            "child",
            "broadcast_id",
            "prev_summary",
            "failure_mode",
            "completion_mode",
            "archived_at",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


class SessionChildSerializer(serializers.Serializer):
    """One child of a session: its edge and its session."""

    subsession = SubSessionSerializer(source="*")
    session = SessionSerializer(source="child")


class SessionWithEdgeSerializer(serializers.Serializer):
    session = SessionSerializer()
    subsession = SubSessionSerializer()


class SummaryOutcomeSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=OutcomeStatus.choices)
    verdict = serializers.CharField(max_length=4000, required=False, allow_blank=True)


class SessionSummarySerializer(serializers.ModelSerializer):
    outcome = SummaryOutcomeSerializer(read_only=True)
    materialized_by = ActorSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Summary
        fields = (
            "id",
            "session",
            "outcome",
            "agent_summary",
            "key_decisions",
            "deliverables",
            "prev_summary",
            "materialized_by",
            "created_at",
        )
        read_only_fields = fields


class SessionSummaryResultSerializer(serializers.Serializer):
    summary = SessionSummarySerializer()
    session = SessionSerializer()


# --- Input -----------------------------------------------------------------------------


class SessionCreateSerializer(StrictSerializer):
    thread = serializers.CharField(max_length=20)
    actor = ActorSerializer()


class SessionUsageInSerializer(StrictSerializer):
    """input and output are required (every provider reports them); cache counts default 0."""

    input_tokens = StrictIntegerField(min_value=0, max_value=MAX_TOKENS)
    cache_read_tokens = StrictIntegerField(min_value=0, max_value=MAX_TOKENS, default=0)
    cache_creation_tokens = StrictIntegerField(min_value=0, max_value=MAX_TOKENS, default=0)
    output_tokens = StrictIntegerField(min_value=0, max_value=MAX_TOKENS)


class TurnSettleSerializer(StrictSerializer):
    usage = SessionUsageInSerializer()


class SessionFailSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class SessionSpawnSerializer(StrictSerializer):
    actor = ActorSerializer()
    workspace_backend = serializers.ChoiceField(choices=WorkspaceBackend.choices, required=False)


class SessionSummaryInSerializer(StrictSerializer):
    outcome = SummaryOutcomeSerializer()
    agent_summary = serializers.CharField(max_length=AGENT_SUMMARY_MAX_CHARS, trim_whitespace=False)
    key_decisions = serializers.ListField(
        child=serializers.CharField(max_length=4000), max_length=200, required=False, default=list
    )
    deliverables = serializers.ListField(
        child=serializers.JSONField(allow_null=True), max_length=200, required=False, default=list
    )


class SessionInterventionSerializer(StrictSerializer):
    actor = ActorSerializer()
    prev_summary = serializers.CharField(max_length=20, required=False, allow_null=True)
