"""Serializer building blocks shared by every app's API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rest_framework import serializers

# What a JSON value of each field kind must already be: DRF coerces (0 → "0", "12" → 12,
# "yes" → True), which turns a client's bug into stored data. No coercion anywhere: every
# input serializer derives from StrictSerializer, which checks these before DRF converts.
_STRING = "Must be a string."
_INTEGER = "Must be an integer."
_BOOLEAN = "Must be true or false."


def choices_text(field: serializers.ChoiceField) -> str:
    return ", ".join(str(choice) for choice in field.choices)


def type_error(field: serializers.Field, value: Any) -> Any:
    """Why `value` is not of `field`'s JSON type (a message, a {index: message} for lists),
    or None. null is left to the field (allow_null)."""
    if value is None:
        return None
    if isinstance(field, serializers.ChoiceField):  # before CharField: not a subclass, though
        if not isinstance(value, str) or value not in field.choice_strings_to_values:
            shown = value if isinstance(value, str) else repr(value)
            return f'"{shown}" is not one of {choices_text(field)}.'
        return None
    if isinstance(field, serializers.CharField):
        return None if isinstance(value, str) else _STRING
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else _BOOLEAN
    if isinstance(field, serializers.IntegerField):
        return None if type(value) is int else _INTEGER
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        problems = {}
        for index, item in enumerate(value):
            problem = type_error(field.child, item)
            if problem is not None:
                problems[index] = [problem] if isinstance(problem, str) else problem
        return problems or None
    return None


class StrictSerializer(serializers.Serializer):
    """Rejects keys it does not know, so a typo or a read-only field is a 400, not a no-op,
    and values of the wrong JSON type (no coercion: {"name": 0} is a 400, not "0")."""

    def _writable(self) -> dict[str, serializers.Field]:
        # Built once per bound instance (the fields are fixed once bound): the append's batch
        # validator is one instance, so its per-message cost is a dict lookup per key.
        writable = self.__dict__.get("_strict_writable")
        if writable is None:
            writable = {
                name: f
                for name, f in self.fields.items()
                if not f.read_only and not isinstance(f, serializers.BaseSerializer)
            }
            nested = {
                name
                for name, f in self.fields.items()
                if not f.read_only and isinstance(f, serializers.BaseSerializer)
            }
            for field in writable.values():
                # Strings are taken verbatim: trimming is a coercion too (" " would become a
                # blank the schema's minLength: 1 allowed, "a " a different key than sent).
                for part in (field, getattr(field, "child", None)):
                    if isinstance(part, serializers.CharField):
                        part.trim_whitespace = False
            self.__dict__["_strict_writable"] = writable
            self.__dict__["_strict_known"] = set(writable) | nested
        return writable

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = self._writable()
            unknown = [name for name in data if name not in self.__dict__["_strict_known"]]
            errors: dict[str, Any] = {
                name: ["Unknown or read-only field."] for name in sorted(unknown)
            }
            for name, value in data.items():
                field = writable.get(name)
                if field is not None:
                    problem = type_error(field, value)
                    if problem is not None:
                        errors[name] = [problem] if isinstance(problem, str) else problem
            if errors:
                raise serializers.ValidationError(errors)
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


def representer(serializer_class: type[serializers.BaseSerializer]) -> Callable:
    """`to_representation` of one instance of `serializer_class`, made once: building a
    serializer's fields (deep copies of the declared ones, nested serializers included) is
    most of the cost of serializing one object, and once bound the fields only read the
    object they are given. For responses of a single object without request context."""
    return serializer_class().to_representation


def validator(serializer_class: type[serializers.BaseSerializer]) -> Callable:
    """`run_validation` of one instance of `serializer_class`, made once (as representer):
    it returns the validated data or raises the ValidationError that is_valid() would, with
    the same detail. For serializers whose fields are fixed at import (no context)."""
    return serializer_class().run_validation
