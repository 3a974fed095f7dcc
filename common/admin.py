"""Admin building blocks shared by every app."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from common.errors import DomainError

PREFIXED_ID = re.compile(r"([a-z]{3})_[0-9a-z]{1,64}")

T = TypeVar("T")


class NoCountPaginator(Paginator):
    """A changelist paginator for tables with millions of rows (messages, events).

    Django's Paginator runs SELECT COUNT(*) over the whole filtered queryset on every page
    load, a full scan on PostgreSQL. This one counts at most `exact_up_to` + 1 rows: the
    COUNT runs over a LIMITed subquery, which stops as soon as the limit is reached. Below
    the limit the count is exact. Above it, an unfiltered list reports the planner's row
    estimate (pg_class.reltuples, after healthchecks' LargeTablePaginator) and a filtered
    list reports the limit: its last pages are out of reach, which is what search and
    filters are for. Pair it with `show_full_result_count = False` so the changelist does
    not count the unfiltered table a second time.
    """

    exact_up_to = 10_000

    @cached_property
    def count(self) -> int:
        if not isinstance(self.object_list, QuerySet):
            return super().count
        bounded = self.object_list.order_by()[: self.exact_up_to + 1].count()
        if bounded <= self.exact_up_to or self.object_list.query.where:
            return bounded
        return max(bounded, self._table_estimate())

    def _table_estimate(self) -> int:
        queryset = self.object_list
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return 0
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                [queryset.model._meta.db_table],
            )
            row = cursor.fetchone()
        # reltuples is -1 for a table that was never vacuumed or analyzed.
        return max(int(row[0]), 0) if row and row[0] is not None else 0


class PrefixedIdSearchMixin:
    """Search that answers a prefixed id (`thd_…`) with one indexed equality.

    `id_search` maps an id prefix to the column holding such ids. A search term that is
    exactly such an id filters that column; anything else falls through to the admin's
    `search_fields`. Django's default ORs every search field with LIKE '%term%', which
    no index serves.
    """

    id_search: dict[str, str] = {}

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        match = PREFIXED_ID.fullmatch(term)
        column = self.id_search.get(match.group(1)) if match else None
        if column:
            return queryset.filter(**{column: term}), False
        return super().get_search_results(request, queryset, search_term)


def changelist_url(model: type, **params: str) -> str:
    """The admin list of `model`, filtered by `params` (a link costs no query, a count would)."""
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def changelist_link(model: type, text: str, **params: str) -> str:
    return format_html('<a href="{}">{}</a>', changelist_url(model, **params), text)


def change_link(model: type, pk: str | None, text: str | None = None) -> str:
    """A link to one row's admin page by its id: no join to fetch the row itself."""
    if not pk:
        return "—"
    url = reverse(
        f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[quote(pk)]
    )
    return format_html('<a href="{}">{}</a>', url, text or pk)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never written from the admin: rows change only through services (whose
    actions, where a model has them, are the admin's only way to change it)."""

    paginator = NoCountPaginator
    show_full_result_count = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- Actions: one service call per selected object -------------------------------------


@dataclass
class Tally:
    """What an action did to the objects it was given."""

    done: int = 0
    unchanged: int = 0
    failures: Counter[str] = field(default_factory=Counter)


def tally_each(objects: Iterable[T], action: Callable[[T], object]) -> Tally:
    """Call `action` on every object, whatever the others did. It returns False when there
    was nothing to do (the object was already so); a DomainError counts under its code;
    anything else is done. A queryset is streamed (.iterator()), not loaded whole."""
    tally = Tally()
    for obj in objects.iterator() if isinstance(objects, QuerySet) else objects:
        try:
            result = action(obj)
        except DomainError as exc:
            tally.failures[exc.code] += 1
            continue
        if result is False:
            tally.unchanged += 1
        else:
            tally.done += 1
    return tally


def apply_each(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    objects: Iterable[T],
    action: Callable[[T], object],
    *,
    done: str,
    noun: str,
    already: str | None = None,
    note: Callable[[], str] | None = None,
) -> None:
    """Run an admin action's service on each selected object (see tally_each) and report in
    one message, the same way for every action, so that one refusal neither hides nor stops
    the rest: "Closed 2 threads. 1 already closed. 1 failure (thread_archived: 1)."

    `done` is the verb and `noun` the singular of what it counts; `already` names the state
    of the unchanged objects (they go unsaid without it); `note` adds a sentence once the
    loop has run (an average over the results, say). It warns when anything failed.
    """
    tally = tally_each(objects, action)
    if already and tally.unchanged and not tally.done and not tally.failures:
        # Nothing to do for any of them (a button pressed twice): say only that.
        parts = [f"{_plural(tally.unchanged, noun)} already {already}; nothing was done."]
    else:
        parts = [f"{done} {_plural(tally.done, noun)}."]
        if already and tally.unchanged:
            parts.append(f"{tally.unchanged} already {already}.")
    if note and (text := note()):
        parts.append(text)
    if tally.failures:
        reasons = ", ".join(f"{code}: {n}" for code, n in sorted(tally.failures.items()))
        parts.append(f"{_plural(tally.failures.total(), 'failure')} ({reasons}).")
    level = messages.WARNING if tally.failures else messages.SUCCESS
    modeladmin.message_user(request, " ".join(parts), level)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --- Actions as buttons on a change page ------------------------------------------------

REASON_MAX_CHARS = 500


class ChangePageActionsMixin:
    """The admin's actions as buttons on each change page, not only in the list's bulk menu.

    `change_actions` maps an action's name (one of the admin's `actions`) to its button
    label; `reason_actions` names those that take a reason, which the button's form asks
    for and the action reads from request.POST["reason"]. A button POSTs to
    <object>/act/<action>/, which runs the very action of the bulk menu on that one object
    (so it reports the same way, "already …" included) and returns to the change page.
    `change_links(obj)` adds (url, label) links to the page's object tools.
    """

    change_actions: dict[str, str] = {}
    reason_actions: frozenset[str] = frozenset()
    change_form_template = "admin/threadline/change_form.html"

    def change_links(self, obj) -> list[tuple[str, str]]:
        return []

    def get_urls(self):
        opts = self.model._meta
        view = self.admin_site.admin_view(self.change_action_view)
        name = f"{opts.app_label}_{opts.model_name}_act"
        return [path("<str:object_id>/act/<str:action>/", view, name=name), *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if obj is not None:
            opts = self.model._meta
            available = self.get_actions(request)
            extra["change_actions"] = [
                {
                    "name": name,
                    "label": label,
                    "reason": name in self.reason_actions,
                    "reason_max": REASON_MAX_CHARS,
                    "url": reverse(
                        f"admin:{opts.app_label}_{opts.model_name}_act", args=[quote(obj.pk), name]
                    ),
                }
                for name, label in self.change_actions.items()
                if name in available
            ]
            extra["change_links"] = self.change_links(obj)
        return super().change_view(request, object_id, form_url, extra)

    def change_action_view(self, request: HttpRequest, object_id: str, action: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        available = self.get_actions(request)
        if action not in self.change_actions or action not in available:
            raise Http404("No such action.")
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such object.")
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        opts = self.model._meta
        back = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)])
        if action in self.reason_actions:
            reason = request.POST.get("reason", "").strip()
            if not reason or len(reason) > REASON_MAX_CHARS:
                self.message_user(
                    request,
                    f"Not done: a reason of 1 to {REASON_MAX_CHARS} characters is required.",
                    messages.ERROR,
                )
                return HttpResponseRedirect(back)
        func = available[action][0]
        func(self, request, self.get_queryset(request).filter(pk=obj.pk))
        return HttpResponseRedirect(back)
