"""Filters of GET /sessions/ (django-filter)."""

from __future__ import annotations

import django_filters

from sessions_app.models import Session, SessionStatus
from threads.api.filters import CommaChoiceFilter


class SessionFilter(django_filters.FilterSet):
    thread = django_filters.CharFilter(field_name="thread_id", max_length=20)
    status = CommaChoiceFilter(field_name="status", choices=SessionStatus.choices)

    class Meta:
        model = Session
        fields = ("thread", "status")
