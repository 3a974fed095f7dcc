"""The operator's admin for sessions, sub-sessions, summaries and workspaces.

Built for big tables like threads/admin/: links by id instead of joins, raw id widgets,
prefixed-id search as one indexed equality, no COUNT(*). Nothing is edited in place: the
state of a session changes only through the services, here through actions (fail, archive,
recover lock) that record the same events as the API.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet, Value
from django.db.models.fields.json import KT
from django.db.models.lookups import Exact
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from common.admin import (
    ChangePageActionsMixin,
    PrefixedIdSearchMixin,
    ReadOnlyAdmin,
    apply_each,
    change_link,
    changelist_link,
)
from common.errors import DomainError
from sessions_app import recovery, retention, transitions
from sessions_app.admin_tree import session_tree
from sessions_app.errors import NotArchivable, NotArchived
from sessions_app.models import (
    ActorKind,
    Session,
    SessionStatus,
    SubSession,
    SubSessionStatus,
    Summary,
    Workspace,
)
from threads.models import Event, Thread


def actor_text(actor: dict | None) -> str:
    return f"{actor['kind']}:{actor['id']}" if actor else "—"


class ActorKindFilter(admin.SimpleListFilter):
    title = "actor kind"
    parameter_name = "actor_kind"

    def lookups(self, request, model_admin):
        return ActorKind.choices

    def queryset(self, request, queryset):
        if self.value() in ActorKind.values:
            # Served by session_actor_kind (an index on current_actor->>'kind') on PostgreSQL.
            # An Exact lookup on the expression itself, not a filter on an alias of it: on
            # SQLite Django compiles the alias's comparison as JSON_EXTRACT('agent', '$')
            # ("malformed JSON", a 500 of this filter and of the list's facets).
            return queryset.filter(Exact(KT("current_actor__kind"), Value(self.value())))
        return queryset


@admin.register(Session)
class SessionAdmin(ChangePageActionsMixin, PrefixedIdSearchMixin, ReadOnlyAdmin):
    list_display = (
        "id",
        "thread_link",
        "status",
        "actor",
        "owner_version",
        "depth",
        "lock_expires_at",
        "updated_at",
    )
    list_filter = ("status", ActorKindFilter)
    search_fields = ("id__exact",)
    id_search = {"ses": "id", "thd": "thread_id", "prj": "project_id", "tnt": "tenant_id"}
    raw_id_fields = ("tenant", "thread", "project", "workspace")
    list_select_related = ("thread",)
    ordering = ("-created_at",)
    actions = ("fail", "archive", "recover_lock")
    change_actions = {"fail": "Fail", "archive": "Archive", "recover_lock": "Recover lock"}
    reason_actions = frozenset({"fail"})
    readonly_fields = ("related",)

    def change_links(self, obj: Session) -> list[tuple[str, str]]:
        return [(reverse("admin:sessions_app_session_tree", args=[quote(obj.pk)]), "Session tree")]

    def get_urls(self):
        view = self.admin_site.admin_view(self.tree_view)
        return [
            path("<str:object_id>/tree/", view, name="sessions_app_session_tree"),
            *super().get_urls(),
        ]

    def tree_view(self, request: HttpRequest, object_id: str) -> TemplateResponse:
        """The session with its ancestors, sub-sessions, summaries and handoffs, one page."""
        session = get_object_or_404(Session.objects.select_related("thread"), pk=unquote(object_id))
        if not self.has_view_permission(request, session):
            raise PermissionDenied
        tree = session_tree(session=session)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "session": session,
            "tree": tree,
            "handoffs": self.tree_handoffs(tree.session_ids()),
            "title": f"Session tree of {session.pk}",
        }
        return TemplateResponse(request, "admin/sessions_app/session_tree.html", context)

    def tree_handoffs(self, session_ids: list[str]) -> list[dict]:
        """The handoffs sent or received by the tree's sessions, as rows for the page;
        handoffs/admin.py fills them in (sessions_app does not import the app above it)."""
        return []

    @admin.display(description="Thread", ordering="thread")
    def thread_link(self, session: Session) -> str:
        return change_link(Thread, session.thread_id, str(session.thread))

    @admin.display(description="Current actor")
    def actor(self, session: Session) -> str:
        return actor_text(session.current_actor)

    @admin.display(description="Related")
    def related(self, session: Session) -> str:
        links = [
            format_html(
                '<a href="{}">session tree</a>',
                reverse("admin:sessions_app_session_tree", args=[quote(session.pk)]),
            ),
            *self.lineage_links(session),
            changelist_link(Summary, "summary", session__id__exact=session.pk),
            changelist_link(
                Event, "events", tenant__id__exact=session.tenant_id, session_id=session.pk
            ),
        ]
        if session.workspace_id:
            links.append(change_link(Workspace, session.workspace_id, "workspace"))
        return format_html_join(" · ", "{}", ((link,) for link in links))

    def lineage_links(self, session: Session) -> list[str]:
        """Where the session's work came from and went. handoffs/admin.py adds the handoffs it
        sent, by extending this admin: sessions_app does not import the app above it."""
        return [
            changelist_link(SubSession, "children", parent__id__exact=session.pk),
            changelist_link(SubSession, "parent edge", child__id__exact=session.pk),
        ]

    @admin.action(description="Fail selected sessions")
    def fail(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        # The change page's button asks for a reason; the bulk menu has no field for one.
        reason = request.POST.get("reason", "").strip() or "failed by operator"

        def fail(session: Session) -> bool:
            if session.status == SessionStatus.FAILED:
                return False  # failing again would record a second session.failed
            transitions.session_fail(session=session, reason=reason)
            return True

        apply_each(self, request, queryset, fail, done="Failed", noun="session", already="failed")

    @admin.action(description="Archive selected sessions (disposes their workspaces)")
    def archive(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        apply_each(
            self, request, queryset, _archive, done="Archived", noun="session", already="archived"
        )

    @admin.action(description="Recover the lock of selected sessions (even if its lease is live)")
    def recover_lock(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        apply_each(
            self, request, queryset, _recover_lock, done="Recovered the lock of", noun="session"
        )


class LockNotRecovered(DomainError):
    """session_lock_recover answers False rather than raising; the admin counts that as this
    failure."""

    code = "not_locked_or_lease_live"
    message = "The session is not locked (or its lease is still live)."


def _archive(session: Session) -> bool:
    if session.status == SessionStatus.ARCHIVED:
        return False
    transitions.session_archive(session=session)
    return True


def _recover_lock(session: Session) -> None:
    if not recovery.session_lock_recover(session=session, force=True):
        raise LockNotRecovered(session=session.pk)


@admin.register(SubSession)
class SubSessionAdmin(ChangePageActionsMixin, PrefixedIdSearchMixin, ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "parent_link",
        "child_link",
        "broadcast_id",
        "created_at",
    )
    list_filter = ("kind", "status")
    search_fields = ("id__exact",)
    id_search = {"sub": "id", "ses": "parent_id", "tnt": "tenant_id"}
    raw_id_fields = ("tenant", "parent", "child", "prev_summary")
    ordering = ("-created_at",)
    actions = ("archive", "restore")
    change_actions = {"archive": "Archive", "restore": "Restore"}

    def change_links(self, obj: SubSession) -> list[tuple[str, str]]:
        return [
            (reverse("admin:sessions_app_session_tree", args=[quote(obj.child_id)]), "Session tree")
        ]

    @admin.action(description="Archive selected sub-sessions (bundle to cold storage)")
    def archive(self, request: HttpRequest, queryset: QuerySet[SubSession]) -> None:
        apply_each(
            self,
            request,
            queryset,
            _subsession_archive,
            done="Archived",
            noun="sub-session",
            already="archived",
        )

    @admin.action(description="Restore selected archived sub-sessions")
    def restore(self, request: HttpRequest, queryset: QuerySet[SubSession]) -> None:
        apply_each(
            self,
            request,
            queryset,
            _subsession_restore,
            done="Restored",
            noun="sub-session",
            already="restored (not archived)",
        )

    @admin.display(description="Parent")
    def parent_link(self, edge: SubSession) -> str:
        return change_link(Session, edge.parent_id)

    @admin.display(description="Child")
    def child_link(self, edge: SubSession) -> str:
        return change_link(Session, edge.child_id)


def _subsession_archive(edge: SubSession) -> bool:
    if edge.status == SubSessionStatus.ARCHIVED:
        return False
    try:
        retention.subsession_archive(subsession=edge)
    except NotArchivable as exc:
        if exc.details.get("reason") == "already_archived":
            return False  # another operator or the sweep got there first
        raise
    return True


def _subsession_restore(edge: SubSession) -> bool:
    try:
        retention.subsession_restore(subsession=edge)
    except NotArchived:
        return False
    return True


@admin.register(Summary)
class SummaryAdmin(PrefixedIdSearchMixin, ReadOnlyAdmin):
    list_display = ("id", "session_link", "outcome_status", "prev_summary_link", "created_at")
    list_filter = ("outcome_status",)
    search_fields = ("id__exact",)
    id_search = {"sum": "id", "ses": "session_id", "tnt": "tenant_id"}
    raw_id_fields = ("tenant", "session", "prev_summary")
    ordering = ("-created_at",)

    @admin.display(description="Session")
    def session_link(self, summary: Summary) -> str:
        return change_link(Session, summary.session_id)

    @admin.display(description="Previous summary")
    def prev_summary_link(self, summary: Summary) -> str:
        return change_link(Summary, summary.prev_summary_id)


@admin.register(Workspace)
class WorkspaceAdmin(PrefixedIdSearchMixin, ReadOnlyAdmin):
    list_display = ("id", "backend", "status", "session_link", "path", "created_at")
    list_filter = ("backend", "status")
    search_fields = ("id__exact",)
    id_search = {"wsp": "id", "ses": "session_id", "tnt": "tenant_id"}
    raw_id_fields = ("tenant", "project", "session")
    ordering = ("-created_at",)

    @admin.display(description="Session")
    def session_link(self, workspace: Workspace) -> str:
        return change_link(Session, workspace.session_id)
