"""Admin building blocks shared by every app."""

from __future__ import annotations

import re

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

PREFIXED_ID = re.compile(r"([a-z]{3})_[0-9a-z]{1,64}")


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
