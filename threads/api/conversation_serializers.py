"""Input and output shapes of compaction, warming and the steering queue."""

from __future__ import annotations

import re

from django.conf import settings
from rest_framework import serializers

from common.api.serializers import StrictSerializer
from threads.models import Compaction, QueuedMessage

# --- Compaction ------------------------------------------------------------------------


class CompactRequestSerializer(StrictSerializer):
    keep_last = serializers.IntegerField(
        min_value=1,
        max_value=100_000,
        required=False,
        help_text="How many of the latest messages to keep verbatim (default: the thread's "
        "compaction.keep_last, 10).",
    )


class CompactionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Compaction
        fields = (
            "id",
            "thread",
            "trigger",
            "status",
            "error",
            "keep_last",
            "messages_summarized",
            "messages_kept",
            "tokens_before",
            "tokens_after",
            "summary",
            "summary_message_id",
            "archive_key",
            "provider",
            "usage",
            "attempts",
            "retry_at",
            "timings",
            "created_at",
            "started_at",
            "finished_at",
        )
        read_only_fields = fields


class CompactionPageSerializer(serializers.Serializer):
    results = CompactionSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="Pass as ?cursor=.")


# --- Warming ---------------------------------------------------------------------------


class UsageSerializer(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cache_read_tokens = serializers.IntegerField()
    cache_creation_tokens = serializers.IntegerField()


class WarmResultSerializer(serializers.Serializer):
    usage = UsageSerializer()
    cache_pct = serializers.IntegerField(
        help_text="round(100 × cache_read / (input + cache_read + cache_creation))"
    )
    retention_pct = serializers.IntegerField(
        help_text="round(100 × cache_read / (cache_read + cache_creation)); 0 when both are 0"
    )
    next_warm_at = serializers.DateTimeField(allow_null=True)


# --- Steering queue --------------------------------------------------------------------


class StringField(serializers.CharField):
    """A CharField that takes only JSON strings (DRF's also turns 12 into "12")."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# Not blank: something besides ASCII whitespace. One class for the schema and the check
# (str.strip() also drops \x1c-\x1f, which a JSON Schema `\s` does not name).
NOT_BLANK = r"[^ \t\n\r\f\v]"


class QueueEnqueueSerializer(StrictSerializer):
    schema_extra = {"content": {"pattern": NOT_BLANK}}
    content = StringField(
        max_length=settings.MAX_MESSAGE_BYTES, trim_whitespace=False, allow_blank=False
    )

    def validate_content(self, value: str) -> str:
        if re.search(NOT_BLANK, value) is None:
            raise serializers.ValidationError("Must not be blank.")
        return value


class QueuedMessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = QueuedMessage
        fields = ("id", "content", "status", "queued_at")
        read_only_fields = fields


class QueuePageSerializer(serializers.Serializer):
    results = QueuedMessageSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="Pass as ?cursor=.")


class QueueDrainSerializer(serializers.Serializer):
    items = QueuedMessageSerializer(many=True)
    text = serializers.CharField(help_text="The contents joined with blank lines.")
