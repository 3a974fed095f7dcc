"""Input and output shapes of the projects, threads, messages and events API."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.api.serializers import DynamicFieldsMixin, StrictSerializer
from threads.models import Event, Project, ReasoningEffort, Role, Thread, WorkspaceBackend

# --- Projects --------------------------------------------------------------------------


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = (
            "id",
            "name",
            "max_delegation_depth",
            "max_delegation_width",
            "max_intervention_depth",
            "workspace_backend",
            "idle_subsession_ttl_seconds",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "created_at", "updated_at")


class ProjectWriteSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    max_delegation_depth = serializers.IntegerField(min_value=0, max_value=1000, required=False)
    max_delegation_width = serializers.IntegerField(min_value=0, max_value=10000, required=False)
    max_intervention_depth = serializers.IntegerField(min_value=0, max_value=1000, required=False)
    workspace_backend = serializers.ChoiceField(choices=WorkspaceBackend.choices, required=False)
    idle_subsession_ttl_seconds = serializers.IntegerField(
        min_value=1,
        max_value=10 * 365 * 86400,
        allow_null=True,
        required=False,
        help_text="Archive idle sub-sessions older than this to cold storage; null turns it off.",
    )


# --- Threads ---------------------------------------------------------------------------


class CompactionSettingsSerializer(serializers.Serializer):
    threshold_tokens = serializers.IntegerField(
        source="compaction_threshold_tokens", allow_null=True, min_value=0, max_value=100_000_000
    )
    threshold_percent = serializers.IntegerField(
        source="compaction_threshold_percent", min_value=0, max_value=100
    )
    context_window = serializers.IntegerField(
        source="compaction_context_window", min_value=1000, max_value=100_000_000
    )
    keep_last = serializers.IntegerField(
        source="compaction_keep_last", min_value=1, max_value=100_000
    )


class WarmingSettingsSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(source="warming_enabled")
    interval_s = serializers.IntegerField(
        source="warming_interval_s", min_value=1, max_value=86_400
    )
    max_idle_warms = serializers.IntegerField(
        source="warming_max_idle_warms", min_value=0, max_value=100_000
    )
    next_warm_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_warm_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_cache_pct = serializers.IntegerField(read_only=True, allow_null=True)
    last_retention_pct = serializers.IntegerField(read_only=True, allow_null=True)


class ThreadSerializer(DynamicFieldsMixin, serializers.ModelSerializer):
    compaction = CompactionSettingsSerializer(source="*", read_only=True)
    warming = WarmingSettingsSerializer(source="*", read_only=True)

    class Meta:
        model = Thread
        fields = (
            "id",
            "project",
            "title",
            "metadata",
            "status",
            "lifecycle",
            "tier",
            "cold_bytes",
            "last_flushed_at",
            "version",
            "history_version",
            "last_seq",
            "message_count",
            "token_estimate",
            "fork_of",
            "reasoning_effort",
            "compaction",
            "warming",
            "created_at",
            "updated_at",
            "last_activity_at",
        )
        read_only_fields = fields


class ThreadSparseSerializer(ThreadSerializer):
    """GET /threads/'s items: a Thread whose fields may be cut down by `?fields=`, so none is
    required in its schema (SparseFieldsExtension); without `fields` every one is present."""


class ThreadCreateSerializer(StrictSerializer):
    project = serializers.CharField(max_length=20)
    title = serializers.CharField(max_length=500, allow_blank=True, required=False, default="")
    metadata = serializers.DictField(required=False, default=dict)


class CompactionSettingsWrite(StrictSerializer):
    threshold_tokens = serializers.IntegerField(
        allow_null=True, min_value=0, max_value=100_000_000, required=False
    )
    threshold_percent = serializers.IntegerField(min_value=0, max_value=100, required=False)
    context_window = serializers.IntegerField(min_value=1000, max_value=100_000_000, required=False)
    keep_last = serializers.IntegerField(min_value=1, max_value=100_000, required=False)


class WarmingSettingsWrite(StrictSerializer):
    enabled = serializers.BooleanField(required=False)
    interval_s = serializers.IntegerField(min_value=1, max_value=86_400, required=False)
    max_idle_warms = serializers.IntegerField(min_value=0, max_value=100_000, required=False)


class ThreadUpdateSerializer(StrictSerializer):
    schema_min_properties = 1  # `{}` is a 400 (validate below)
    title = serializers.CharField(max_length=500, allow_blank=True, required=False)
    metadata = serializers.DictField(required=False)
    reasoning_effort = serializers.ChoiceField(choices=ReasoningEffort.choices, required=False)
    compaction = CompactionSettingsWrite(required=False)
    warming = WarmingSettingsWrite(required=False)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Nothing to change.")
        return attrs


class ForkSerializer(StrictSerializer):
    title = serializers.CharField(max_length=500, allow_blank=True, required=False)


@extend_schema_field({"type": "object", "additionalProperties": {}})
class StateField(serializers.JSONField):
    """The state slice: a JSON object (or null, with allow_null); see validate_state."""


class StateSerializer(StrictSerializer):
    state = StateField(allow_null=True)

    def validate_state(self, value):
        if value is not None and not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object or null.")
        return value


# --- Messages --------------------------------------------------------------------------


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"type": {"type": "string", "minLength": 1}},
                    "required": ["type"],
                },
            },
        ]
    }
)
class ContentField(serializers.JSONField):
    """A string, or a list of content blocks (objects with a string `type`)."""

    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        if isinstance(data, str):
            return data
        if isinstance(data, list) and all(
            isinstance(b, dict) and isinstance(b.get("type"), str) and b["type"] for b in data
        ):
            return data
        raise serializers.ValidationError(
            "Must be a string or a list of content blocks, each an object with a 'type'."
        )


class MessageInSerializer(StrictSerializer):
    # An idempotency key is taken verbatim: trimming would make " a" a duplicate of "a".
    id = serializers.CharField(max_length=128, required=False, trim_whitespace=False)
    role = serializers.ChoiceField(choices=Role.choices)
    content = ContentField()
    metadata = serializers.DictField(required=False)


class MessageBatchSerializer(StrictSerializer):
    messages = MessageInSerializer(
        many=True, allow_empty=False, max_length=settings.MAX_BATCH_MESSAGES
    )


class MessageReplaceSerializer(StrictSerializer):
    messages = MessageInSerializer(
        many=True, allow_empty=True, max_length=settings.MAX_BATCH_MESSAGES
    )


class MessageOutSerializer(serializers.Serializer):
    id = serializers.CharField()
    seq = serializers.IntegerField()
    role = serializers.ChoiceField(choices=Role.choices)
    content = serializers.JSONField()
    metadata = serializers.DictField()
    token_estimate = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class MessagePageSerializer(serializers.Serializer):
    results = MessageOutSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="Pass as ?cursor= (the last seq).")


class MessageRefSerializer(serializers.Serializer):
    id = serializers.CharField()
    seq = serializers.IntegerField()


class AppendResultSerializer(serializers.Serializer):
    appended = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    messages = MessageRefSerializer(many=True)
    last_seq = serializers.IntegerField()


class TruncateSerializer(StrictSerializer):
    from_id = serializers.CharField(max_length=128, trim_whitespace=False)


class TruncateResultSerializer(serializers.Serializer):
    removed = serializers.IntegerField()


# --- Events ----------------------------------------------------------------------------


class EventSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    thread = serializers.CharField(source="thread_id", allow_null=True)
    session = serializers.CharField(source="session_id", allow_null=True)

    class Meta:
        model = Event
        fields = ("id", "kind", "thread", "session", "payload", "created_at")
        read_only_fields = fields
