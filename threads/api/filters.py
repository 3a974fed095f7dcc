"""Filters of GET /threads/ and GET /events/ (django-filter)."""

from __future__ import annotations

import django_filters
from django import forms
from rest_framework.exceptions import ValidationError

from threads.models import Event, Lifecycle, Thread, ThreadStatus, Tier


class CommaChoiceFilter(django_filters.Filter):
    """`?lifecycle=active,idle` — every item must be one of the choices."""

    def __init__(self, *args, choices, **kwargs):
        self.allowed = {value for value, _ in choices}
        super().__init__(*args, lookup_expr="in", **kwargs)

    field_class = forms.CharField

    def filter(self, qs, value):
        if not value:
            return qs
        # Exactly what the schema's pattern (comma_list_pattern) says: no blanks, no spaces.
        items = value.split(",")
        bad = sorted(set(items) - self.allowed)
        if bad:
            allowed = ", ".join(sorted(self.allowed))
            shown = ", ".join(f'"{item}"' for item in bad)
            raise ValidationError(
                {self.field_name: [f"{shown} is not one of {allowed} (a comma list of them)."]}
            )
        return super().filter(qs, items)


def not_one_of(choices) -> dict[str, str]:
    """A choice filter's error that lists the valid values, as the serializers' do."""
    valid = ", ".join(value for value, _ in choices)
    return {"invalid_choice": f'"%(value)s" is not one of {valid}.'}


class ThreadFilter(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project_id")
    status = django_filters.ChoiceFilter(
        choices=ThreadStatus.choices, error_messages=not_one_of(ThreadStatus.choices)
    )
    lifecycle = CommaChoiceFilter(field_name="lifecycle", choices=Lifecycle.choices)
    tier = django_filters.ChoiceFilter(
        choices=Tier.choices, error_messages=not_one_of(Tier.choices)
    )
    q = django_filters.CharFilter(field_name="title", lookup_expr="startswith", max_length=500)

    class Meta:
        model = Thread
        fields = ("project", "status", "lifecycle", "tier", "q")


class EventFilter(django_filters.FilterSet):
    thread = django_filters.CharFilter(field_name="thread_id")
    session = django_filters.CharFilter(field_name="session_id")
    kind = django_filters.BaseInFilter(field_name="kind", lookup_expr="in")

    class Meta:
        model = Event
        fields = ("thread", "session", "kind")
