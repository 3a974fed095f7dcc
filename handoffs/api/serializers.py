"""Input and output shapes of the handoffs API."""

from __future__ import annotations

from rest_framework import serializers

from common.api.serializers import ActorSerializer, StrictSerializer
from handoffs.models import Handoff, HandoffMode, HandoffOutcome
from sessions_app.api.serializers import SessionSerializer, StrictIntegerField
from threads.models import WorkspaceBackend

MAX_RECIPIENTS = 1000


class HandoffCreateSerializer(StrictSerializer):
    # What the service checks (in its order) said in the schema: one recipient for a single
    # handoff, two or more for a broadcast, never the same actor twice. (`mode` by a pattern,
    # not an enum: drf-spectacular's enum hook would fold an enum back into ModeEnum.)
    schema_extra = {"recipients": {"minItems": 1, "uniqueItems": True}}
    schema_one_of = [
        {
            "properties": {
                "mode": {"type": "string", "pattern": "^single$"},
                "recipients": {"maxItems": 1},
            }
        },
        {
            "properties": {
                "mode": {"type": "string", "pattern": "^broadcast$"},
                "recipients": {"minItems": 2},
            }
        },
    ]
    mode = serializers.ChoiceField(choices=HandoffMode.choices)
    source_session = serializers.CharField(max_length=20)
    expected_owner_version = StrictIntegerField(min_value=0, max_value=2**62)
    # Emptiness, per-mode counts and duplicates are checked by the service, in its order.
    recipients = ActorSerializer(many=True, allow_empty=True, max_length=MAX_RECIPIENTS)
    workspace_backend = serializers.ChoiceField(choices=WorkspaceBackend.choices, required=False)


class HandoffRowSerializer(serializers.ModelSerializer):
    recipient = ActorSerializer(read_only=True)

    class Meta:
        model = Handoff
        fields = (
            "id",
            "position",
            "recipient",
            "recipient_session",
            "subsession",
            "workspace",
            "workspace_backend",
            "created_at",
            "completed_at",
        )
        read_only_fields = fields


class HandoffSerializer(serializers.Serializer):
    """A whole handoff (all its recipients); built by handoff_representation."""

    id = serializers.CharField()
    mode = serializers.ChoiceField(choices=HandoffMode.choices)
    status = serializers.ChoiceField(choices=HandoffOutcome.choices)
    source_session = serializers.CharField()
    expected_owner_version = serializers.IntegerField()
    new_owner_version = serializers.IntegerField(allow_null=True)
    recipient_sessions = SessionSerializer(many=True)
    handoffs = HandoffRowSerializer(many=True)
    error = serializers.CharField(help_text="Why it was rolled back; empty otherwise.")
    partial_state = serializers.DictField(
        allow_null=True, help_text="How far a rolled-back handoff got before its rollback."
    )


# One instance serves every response: once bound, its fields (and the nested serializers'
# fields) only read the object they are given, and building them is most of the cost of
# serializing a handoff. JSONRenderer renders the plain dict as it did the ReturnDict.
_REPRESENTATION = HandoffSerializer()


def handoff_representation(rows: list[Handoff]) -> dict:
    first = rows[0]
    return _REPRESENTATION.to_representation(
        {
            "id": first.group_id,
            "mode": first.mode,
            "status": first.outcome,
            "source_session": first.source_session_id,
            "expected_owner_version": first.expected_owner_version,
            "new_owner_version": first.new_owner_version,
            "recipient_sessions": [r.recipient_session for r in rows if r.recipient_session],
            "handoffs": rows,
            "error": first.error,
            "partial_state": first.partial_state,
        }
    )
