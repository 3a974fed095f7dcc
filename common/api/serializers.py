"""Serializer building blocks shared by every app's API."""

from __future__ import annotations

from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """Rejects keys it does not know, so a typo or a read-only field is a 400, not a no-op."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, f in self.fields.items() if not f.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown or read-only field."] for name in unknown}
                )
        return super().to_internal_value(data)


class ActorSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=("user", "agent", "system"))
    id = serializers.CharField(max_length=200)


class DynamicFieldsMixin:
    """`?fields=a,b` keeps only those fields of the representation (unknown names → 400)."""

    def __init__(self, *args, fields: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if fields:
            unknown = sorted(set(fields) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {"fields": [f"Unknown fields: {', '.join(unknown)}."]}
                )
            for name in set(self.fields) - set(fields):
                self.fields.pop(name)


def representer(serializer_class: type[serializers.BaseSerializer]):
    """`to_representation` of one instance of `serializer_class`, made once: building a
    serializer's fields (deep copies of the declared ones, nested serializers included) is
    most of the cost of serializing one object, and once bound the fields only read the
    object they are given. For responses of a single object without request context."""
    return serializer_class().to_representation


def validator(serializer_class: type[serializers.BaseSerializer]):
    """`run_validation` of one instance of `serializer_class`, made once (as representer):
    it returns the validated data or raises the ValidationError that is_valid() would, with
    the same detail. For serializers whose fields are fixed at import (no context)."""
    return serializer_class().run_validation
