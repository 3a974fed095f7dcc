"""Handoffs in the admin: read-only, linked to their source and recipient sessions, and
listed from each session's page (the sessions admin, extended here)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Q
from django.utils.html import format_html

from common.admin import PrefixedIdSearchMixin, ReadOnlyAdmin, change_link, changelist_link
from handoffs.models import Handoff
from sessions_app.admin import SessionAdmin, actor_text
from sessions_app.models import Session, SubSession, Workspace


@admin.register(Handoff)
class HandoffAdmin(PrefixedIdSearchMixin, ReadOnlyAdmin):
    list_display = (
        "id",
        "group_id",
        "mode",
        "outcome",
        "source_link",
        "recipient_text",
        "recipient_link",
        "created_at",
    )
    list_filter = ("mode", "outcome")
    search_fields = ("id__exact", "group_id__exact")
    id_search = {"hof": "group_id", "ses": "source_session_id", "tnt": "tenant_id"}
    raw_id_fields = (
        "tenant",
        "thread",
        "source_session",
        "recipient_session",
        "subsession",
        "workspace",
    )
    ordering = ("-created_at",)
    readonly_fields = ("links",)

    @admin.display(description="Source")
    def source_link(self, handoff: Handoff) -> str:
        return change_link(Session, handoff.source_session_id)

    @admin.display(description="Recipient")
    def recipient_text(self, handoff: Handoff) -> str:
        return actor_text(handoff.recipient)

    @admin.display(description="Recipient session")
    def recipient_link(self, handoff: Handoff) -> str:
        return change_link(Session, handoff.recipient_session_id)

    @admin.display(description="Links")
    def links(self, handoff: Handoff) -> str:
        return format_html(
            "source {} · recipient {} · sub-session {} · workspace {}",
            change_link(Session, handoff.source_session_id),
            change_link(Session, handoff.recipient_session_id),
            change_link(SubSession, handoff.subsession_id),
            change_link(Workspace, handoff.workspace_id),
        )


# Registered again with the handoffs it sent, since sessions_app may not import handoffs.
admin.site.unregister(Session)


@admin.register(Session)
class SessionWithHandoffsAdmin(SessionAdmin):
    def lineage_links(self, session: Session) -> list[str]:
        out = changelist_link(Handoff, "handoffs out", source_session__id__exact=session.pk)
        return [*super().lineage_links(session), out]

    def tree_handoffs(self, session_ids: list[str]) -> list[dict]:
        """The handoffs sent or received by the tree's sessions, newest first (at most
        TREE_HANDOFFS; the handoff list has the rest)."""
        rows = Handoff.objects.filter(
            Q(source_session_id__in=session_ids) | Q(recipient_session_id__in=session_ids)
        ).order_by("-created_at", "-id")[:TREE_HANDOFFS]
        return [
            {
                "id": change_link(Handoff, row.pk),
                "group": row.group_id,
                "mode": row.mode,
                "outcome": row.outcome,
                "source": change_link(Session, row.source_session_id),
                "recipient": actor_text(row.recipient),
                "recipient_session": change_link(Session, row.recipient_session_id),
                "error": row.error,
                "created_at": row.created_at,
            }
            for row in rows
        ]


TREE_HANDOFFS = 200
