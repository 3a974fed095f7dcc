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


def _count(help_text: str, **kwargs) -> StrictIntegerField:
    return StrictIntegerField(
        min_value=0, max_value=MAX_TOKENS, required=False, help_text=help_text, **kwargs
    )


class CachedTokensSerializer(serializers.Serializer):
    """OpenAI's `prompt_tokens_details` / `input_tokens_details` (other counts in it, such
    as audio_tokens, are accepted and ignored)."""

    cached_tokens = _count("Of the input (prompt) tokens, how many were read from the cache.")


class OutputDetailsSerializer(serializers.Serializer):
    """OpenAI's `completion_tokens_details` / `output_tokens_details`: accepted, not stored."""

    reasoning_tokens = _count("Accepted and ignored (already counted in the output tokens).")


class CacheCreationSerializer(serializers.Serializer):
    """Anthropic's `cache_creation` breakdown by TTL: accepted, not stored (its total is
    `cache_creation_input_tokens`)."""

    ephemeral_5m_input_tokens = _count("Accepted and ignored.")
    ephemeral_1h_input_tokens = _count("Accepted and ignored.")


class SessionUsageInSerializer(StrictSerializer):
    """The turn's usage as the provider returned it: Threadline's names, Anthropic's
    Messages API usage object, or OpenAI's (Chat Completions or Responses). Every count is
    optional (missing = 0). Stored as input / cache read / cache creation / output, where
    input excludes the cached tokens (as Anthropic counts): OpenAI's prompt or input tokens
    include their `cached_tokens`, which are therefore subtracted. Two names for one count
    must agree; a count may not be given in two cache conventions at once."""

    input_tokens = _count(
        "Input tokens. Anthropic and Threadline: not read from or written to the cache. "
        "OpenAI Responses (with input_tokens_details): all input tokens, cached included."
    )
    output_tokens = _count("Output tokens (Anthropic, OpenAI Responses, Threadline).")
    cache_read_tokens = _count("Threadline's name for tokens read from the prompt cache.")
    cache_creation_tokens = _count("Threadline's name for tokens written to the prompt cache.")
    cache_read_input_tokens = _count("Anthropic: tokens read from the prompt cache.")
    cache_creation_input_tokens = _count("Anthropic: tokens written to the prompt cache.")
    cache_creation = CacheCreationSerializer(
        required=False, allow_null=True, help_text="Anthropic: ignored."
    )
    server_tool_use = serializers.DictField(
        child=StrictIntegerField(min_value=0, max_value=MAX_TOKENS),
        required=False,
        allow_null=True,
        help_text="Anthropic: server tool request counts; accepted and ignored.",
    )
    service_tier = serializers.CharField(
        required=False, allow_null=True, max_length=100, help_text="Anthropic: ignored."
    )
    prompt_tokens = _count("OpenAI Chat Completions: all input tokens, cached included.")
    completion_tokens = _count("OpenAI Chat Completions: output tokens.")
    total_tokens = _count("OpenAI: input + output; accepted and ignored.")
    prompt_tokens_details = CachedTokensSerializer(
        required=False,
        allow_null=True,
        help_text="OpenAI Chat Completions: `cached_tokens` of the prompt.",
    )
    input_tokens_details = CachedTokensSerializer(
        required=False, allow_null=True, help_text="OpenAI Responses: `cached_tokens` of the input."
    )
    completion_tokens_details = OutputDetailsSerializer(
        required=False, allow_null=True, help_text="Ignored."
    )
    output_tokens_details = OutputDetailsSerializer(
        required=False, allow_null=True, help_text="Ignored."
    )

    @staticmethod
    def _one(data: dict, *names: str) -> tuple[int, str | None]:
        given = [(name, data[name]) for name in names if data.get(name) is not None]
        if len({value for _, value in given}) > 1:
            raise serializers.ValidationError(
                {name: [f"Disagrees with {given[0][0]} ({given[0][1]})."] for name, _ in given[1:]}
            )
        return (given[0][1], given[0][0]) if given else (0, None)

    def validate(self, data: dict) -> dict:
        details = {
            name: (data.get(name) or {}).get("cached_tokens")
            for name in ("prompt_tokens_details", "input_tokens_details")
        }
        flat = {**data, **{f"{name}.cached_tokens": v for name, v in details.items()}}
        input_tokens, input_name = self._one(flat, "input_tokens", "prompt_tokens")
        output_tokens, _ = self._one(flat, "output_tokens", "completion_tokens")
        cached, _ = self._one(
            flat, "prompt_tokens_details.cached_tokens", "input_tokens_details.cached_tokens"
        )
        cache_read, read_name = self._one(flat, "cache_read_tokens", "cache_read_input_tokens")
        creation, _ = self._one(flat, "cache_creation_tokens", "cache_creation_input_tokens")
        openai = input_name == "prompt_tokens" or any(v is not None for v in details.values())
        if openai:
            if read_name is not None:
                raise serializers.ValidationError(
                    {read_name: ["Give cached tokens once: here or as *_details.cached_tokens."]}
                )
            if cached > input_tokens:
                raise serializers.ValidationError(
                    {"cached_tokens": ["More cached tokens than input tokens."]}
                )
            input_tokens, cache_read = input_tokens - cached, cached
        return {
            "input_tokens": input_tokens,
            "cache_read_tokens": cache_read,
            "cache_creation_tokens": creation,
            "output_tokens": output_tokens,
        }


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
