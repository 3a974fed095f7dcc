"""The operator's admin for tenants, API keys, projects, threads, messages and events.

Built for big tables (after healthchecks' hc/api/admin.py): list_select_related for every
foreign key a list shows, raw id widgets instead of <select>s of every row, searches that
turn a prefixed id into one indexed equality, and no COUNT(*) over messages and events.
Every write goes through threads.services, as the API's do, so the admin records the same
events and keeps the same guards: a form save writes only the fields the operator changed
(a full-row save would put back counters that concurrent appends moved meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from common.admin import (
    NoCountPaginator,
    PrefixedIdSearchMixin,
    ReadOnlyAdmin,
    apply_each,
    changelist_url,
    tally_each,
)
from common.errors import DomainError
from threads import events, services
from threads.models import ApiKey, Event, Message, Project, Tenant, Thread
from threads.storage import tiers


def _adopt(obj, created) -> None:
    """Make the admin's unsaved instance the row a service created, so the log entry, the
    redirect and the page that follows all refer to it."""
    for field in type(obj)._meta.concrete_fields:
        setattr(obj, field.attname, getattr(created, field.attname))
    obj._state.adding = False
    obj._state.db = created._state.db


class ShowsSecretOnceMixin:
    """After an add that created an API key, answer with a page that shows its secret.

    The secret goes into that one response and nowhere else: not the database (only its
    hash), not the session, not a messages cookie. save_model() leaves it on the request.
    """

    secret_template = "admin/threads/secret_shown.html"

    def response_add(self, request, obj, post_url_continue=None):
        created = getattr(request, "_threadline_new_key", None)
        if created is None:
            return super().response_add(request, obj, post_url_continue)
        api_key, secret = created
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "object": obj,
            "title": "API key created",
            "created_message": f"Created {self.model._meta.verbose_name} {obj}.",
            "secret": secret,
            "api_key_url": reverse("admin:threads_apikey_change", args=[api_key.pk]),
        }
        # admin_view() marks every admin response no-store, this one included.
        return TemplateResponse(request, self.secret_template, context)


# --- Tenancy ---------------------------------------------------------------------------


@admin.register(Tenant)
class TenantAdmin(ShowsSecretOnceMixin, PrefixedIdSearchMixin, admin.ModelAdmin):
    # No per-row API key count: links to the filtered lists cost nothing.
    list_display = ("id", "name", "created_at", "related")
    search_fields = ("id__exact", "name")
    id_search = {"tnt": "id"}
    readonly_fields = ("id", "created_at", "related")
    ordering = ("-created_at",)

    def get_fields(self, request, obj=None):
        return ("name",) if obj is None else ("id", "name", "created_at", "related")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a tenant owns all its data; revoke its keys instead

    @admin.display(description="Related")
    def related(self, tenant: Tenant) -> str:
        links = (
            (changelist_url(ApiKey, tenant__id__exact=tenant.pk), "API keys"),
            (changelist_url(Project, tenant__id__exact=tenant.pk), "projects"),
            (changelist_url(Thread, tenant__id__exact=tenant.pk), "threads"),
            (changelist_url(Event, tenant__id__exact=tenant.pk), "events"),
        )
        return format_html_join(" · ", '<a href="{}">{}</a>', links)

    def save_model(self, request, obj, form, change):
        if change:
            if form.changed_data:
                obj.save(update_fields=form.changed_data)
            return
        tenant, secret = services.tenant_create(name=obj.name)
        _adopt(obj, tenant)
        request._threadline_new_key = (tenant.api_keys.get(), secret)


class ActiveKeyFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("active", "Active"), ("revoked", "Revoked"))

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(ShowsSecretOnceMixin, PrefixedIdSearchMixin, admin.ModelAdmin):
    """secret_hash is never shown. Adding a key asks only tenant and name; the secret is
    generated by services.api_key_create and shown once."""

    list_display = ("prefix_", "tenant", "name", "created_at", "last_used_at", "revoked_at")
    list_select_related = ("tenant",)
    list_filter = (ActiveKeyFilter,)
    search_fields = ("prefix__startswith", "name")
    id_search = {"key": "id", "tnt": "tenant_id"}
    raw_id_fields = ("tenant",)
    ordering = ("-created_at",)
    actions = ("revoke",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tenant", "name")
        return ("id", "prefix", "tenant", "name", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("id", "prefix", "tenant", "created_at", "last_used_at", "revoked_at")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke: the key stays on record with its last use

    @admin.display(description="Prefix", ordering="prefix")
    def prefix_(self, api_key: ApiKey) -> str:
        return f"{api_key.prefix}…"

    def save_model(self, request, obj, form, change):
        if change:
            # Only the name: a full-row save could un-revoke a key revoked meanwhile.
            if form.changed_data:
                obj.save(update_fields=form.changed_data)
            return
        api_key, secret = services.api_key_create(tenant=obj.tenant, name=obj.name)
        _adopt(obj, api_key)
        request._threadline_new_key = (api_key, secret)

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        apply_each(
            self, request, queryset, _revoke, done="Revoked", noun="API key", already="revoked"
        )


def _revoke(api_key: ApiKey) -> bool:
    if api_key.revoked_at is not None:
        return False
    services.api_key_revoke(api_key=api_key)
    return True


# --- Projects --------------------------------------------------------------------------


@admin.register(Project)
class ProjectAdmin(PrefixedIdSearchMixin, admin.ModelAdmin):
    list_display = ("id", "name", "tenant", "workspace_backend", "created_at")
    list_select_related = ("tenant",)
    list_filter = ("workspace_backend",)
    search_fields = ("id__exact", "name")
    id_search = {"prj": "id", "tnt": "tenant_id"}
    raw_id_fields = ("tenant",)
    ordering = ("-created_at",)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ("id", "created_at", "updated_at")
        # Moving a project to another tenant would leave its threads behind.
        return ("id", "tenant", "created_at", "updated_at")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # threads protect their project; there is no project delete service

    def save_model(self, request, obj, form, change):
        if change:
            fields = {name: form.cleaned_data[name] for name in form.changed_data}
            if fields:
                services.project_update(project=obj, **fields)
            return
        fields = {name: value for name, value in form.cleaned_data.items() if name != "tenant"}
        _adopt(obj, services.project_create(tenant=obj.tenant, **fields))


# --- Threads ---------------------------------------------------------------------------

# What an operator may edit, as thread_update() takes it: column → (group, key).
THREAD_EDITABLE = {
    "title": (None, "title"),
    "metadata": (None, "metadata"),
    "reasoning_effort": (None, "reasoning_effort"),
    "compaction_threshold_tokens": ("compaction", "threshold_tokens"),
    "compaction_threshold_percent": ("compaction", "threshold_percent"),
    "compaction_context_window": ("compaction", "context_window"),
    "compaction_keep_last": ("compaction", "keep_last"),
    "warming_enabled": ("warming", "enabled"),
    "warming_interval_s": ("warming", "interval_s"),
    "warming_max_idle_warms": ("warming", "max_idle_warms"),
}

THREAD_FIELDSETS = (
    (None, ("id", "tenant", "project", "fork_of", "title", "metadata", "related")),
    (
        "State",
        (
            "status",
            "lifecycle",
            "tier",
            "reasoning_effort",
            "version",
            "history_version",
            "last_seq",
            "message_count",
            "token_estimate",
            "state",
        ),
    ),
    (
        "Compaction",
        (
            "compaction_threshold_tokens",
            "compaction_threshold_percent",
            "compaction_context_window",
            "compaction_keep_last",
        ),
    ),
    ("Warming", ("warming_enabled", "warming_interval_s", "warming_max_idle_warms")),
    ("Timestamps", ("created_at", "updated_at", "last_activity_at")),
)


def thread_changes(cleaned: dict, changed: Iterable[str]) -> dict:
    """The changed form fields in thread_update()'s shape ({"warming": {"enabled": …}})."""
    changes: dict = {}
    for name in changed:
        group, key = THREAD_EDITABLE[name]
        target = changes.setdefault(group, {}) if group else changes
        target[key] = cleaned[name]
    return changes


class ThreadAdminForm(forms.ModelForm):
    def clean_metadata(self):
        value = self.cleaned_data.get("metadata")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError("Metadata must be a JSON object.")
        return value


@admin.register(Thread)
class ThreadAdmin(PrefixedIdSearchMixin, admin.ModelAdmin):
    form = ThreadAdminForm
    list_display = (
        "id",
        "title",
        "tenant",
        "project",
        "status",
        "lifecycle",
        "tier",
        "cold_bytes",
        "message_count",
        "last_seq",
        "updated_at",
    )
    list_filter = ("status", "lifecycle", "tier")
    list_select_related = ("tenant", "project")
    search_fields = ("id__exact", "title")
    id_search = {"thd": "id", "prj": "project_id", "tnt": "tenant_id"}
    raw_id_fields = ("tenant", "project", "fork_of")
    ordering = ("-created_at",)
    actions = ("archive", "close", "open", "flush", "hydrate")
    paginator = NoCountPaginator
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False  # threads are created through the API (POST /api/v1/threads/)

    def get_fieldsets(self, request, obj=None):
        fieldsets = [(title, {"fields": fields}) for title, fields in THREAD_FIELDSETS]
        listed = {name for _, fields in THREAD_FIELDSETS for name in fields}
        # Columns later issues add (tiers, usage, …) show up read-only without an edit here.
        rest = tuple(f.name for f in Thread._meta.concrete_fields if f.name not in listed)
        if rest:
            fieldsets.append(("More", {"fields": rest, "classes": ("collapse",)}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        every = [f.name for f in Thread._meta.concrete_fields] + ["related"]
        if obj is not None and obj.is_archived:
            return every  # archived is a hard read-only boundary, here too
        return [name for name in every if name not in THREAD_EDITABLE]

    @admin.display(description="Related")
    def related(self, thread: Thread) -> str:
        return format_html(
            '<a href="{}">messages</a> · <a href="{}">events</a>',
            changelist_url(Message, thread__id__exact=thread.pk),
            changelist_url(Event, tenant__id__exact=thread.tenant_id, thread_id=thread.pk),
        )

    def save_model(self, request, obj, form, change):
        changes = thread_changes(form.cleaned_data, form.changed_data)
        if not changes:
            return
        try:
            services.thread_update(thread=obj, changes=changes)
        except DomainError as exc:
            request._threadline_failed = True
            self.message_user(request, f"Not saved: {exc.message} ({exc.code})", messages.ERROR)

    def response_change(self, request, obj):
        if getattr(request, "_threadline_failed", False):
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    # Deleting goes through services.thread_delete (it records thread.deleted). Django's
    # confirmation page would list every message and ask for a delete permission on
    # messages, which are read-only here: summarize instead.
    def get_deleted_objects(self, objs, request):
        threads = list(objs)
        summary = [str(thread) for thread in threads]
        counts = {
            "threads": len(threads),
            "messages": sum(thread.message_count for thread in threads),
        }
        return summary, counts, set(), []

    def has_delete_permission(self, request, obj=None) -> bool:
        # A thread with sessions cannot be deleted (thread_not_empty): hide the button.
        if obj is not None and obj.sessions.exists():
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        try:
            services.thread_delete(thread=obj)
        except DomainError as exc:  # a session was attached since the page was shown
            raise PermissionDenied(exc.message) from exc

    def delete_queryset(self, request, queryset):
        # Django's delete_selected reports the deletions; this reports the refusals.
        refused = tally_each(queryset, lambda thread: services.thread_delete(thread=thread))
        if refused.failures:
            failures = sorted(refused.failures.items())
            summary = ", ".join(f"{count} {code}" for code, count in failures)
            self.message_user(request, f"Not deleted: {summary}.", messages.ERROR)

    @admin.action(description="Archive selected threads (read-only afterwards)")
    def archive(self, request: HttpRequest, queryset: QuerySet[Thread]) -> None:
        action = _changed_by(services.thread_archive)
        apply_each(
            self, request, queryset, action, done="Archived", noun="thread", already="archived"
        )

    @admin.action(description="Close selected conversations")
    def close(self, request: HttpRequest, queryset: QuerySet[Thread]) -> None:
        action = _changed_by(services.thread_close)
        apply_each(self, request, queryset, action, done="Closed", noun="thread", already="closed")

    @admin.action(description="Re-open selected conversations")
    def open(self, request: HttpRequest, queryset: QuerySet[Thread]) -> None:
        action = _changed_by(services.thread_open)
        apply_each(self, request, queryset, action, done="Opened", noun="thread", already="opened")

    @admin.action(description="Flush selected threads to cold storage")
    def flush(self, request: HttpRequest, queryset: QuerySet[Thread]) -> None:
        action = _moved_to("cold", tiers.thread_flush)
        apply_each(self, request, queryset, action, done="Flushed", noun="thread", already="cold")

    @admin.action(description="Hydrate selected threads from cold storage")
    def hydrate(self, request: HttpRequest, queryset: QuerySet[Thread]) -> None:
        action = _moved_to("hot", tiers.thread_hydrate)
        apply_each(self, request, queryset, action, done="Hydrated", noun="thread", already="hot")


def _changed_by(service: Callable[..., Thread]) -> Callable[[Thread], bool]:
    """The service as an action that tells whether it changed the thread: a transition that
    had nothing to do leaves `version` as it was."""

    def run(thread: Thread) -> bool:
        version = thread.version  # the service refreshes this very instance
        return service(thread=thread).version != version

    return run


def _moved_to(tier: str, service: Callable[..., Thread]) -> Callable[[Thread], bool]:
    """The tier move as an action; a move leaves `version` alone, so ask the tier first."""

    def run(thread: Thread) -> bool:
        if thread.tier == tier:
            return False
        service(thread=thread)
        return True

    return run


# --- Messages and events: read-only, huge ---------------------------------------------


@admin.register(Message)
class MessageAdmin(PrefixedIdSearchMixin, ReadOnlyAdmin):
    """Listed per thread: search a thread id, or follow a thread's "messages" link. The
    default order (thread, seq) is the message_thread_seq index."""

    list_display = ("thread", "seq", "message_id", "role", "preview", "token_estimate")
    list_filter = ("role",)
    list_select_related = ("thread",)
    search_fields = ("thread__id__exact",)
    id_search = {"thd": "thread_id"}
    raw_id_fields = ("thread",)

    @admin.display(description="Content")
    def preview(self, message: Message) -> str:
        content = message.content
        if isinstance(content, list):
            content = " ".join(
                block.get("text", f"[{block.get('type')}]")
                for block in content
                if isinstance(block, dict)
            )
        return Truncator(str(content)).chars(80)


class EventKindFilter(admin.SimpleListFilter):
    """The known kinds, without SELECT DISTINCT over the whole trail. Any other kind still
    filters through ?kind=<kind>. Every kind is named in threads/events.py."""

    title = "kind"
    parameter_name = "kind"
    kinds: list[str] = list(events.KINDS)

    def lookups(self, request, model_admin):
        kinds = list(self.kinds)
        if self.value() and self.value() not in kinds:
            kinds.append(self.value())
        return [(kind, kind) for kind in kinds]

    def queryset(self, request, queryset):
        return queryset.filter(kind=self.value()) if self.value() else queryset


@admin.register(Event)
class EventAdmin(PrefixedIdSearchMixin, ReadOnlyAdmin):
    list_display = ("public_id", "kind", "tenant", "thread_id", "session_id", "created_at")
    list_filter = (EventKindFilter,)
    list_select_related = ("tenant",)
    search_fields = ("public_id__exact", "thread_id__exact", "session_id__exact")
    id_search = {"evt": "public_id", "thd": "thread_id", "ses": "session_id", "tnt": "tenant_id"}
    raw_id_fields = ("tenant",)
    ordering = ("-id",)


from threads import admin_conversation  # noqa: E402, F401  (compactions, thread actions)
