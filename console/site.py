"""Threadline's admin site: branded, with the dashboard as its index."""

from __future__ import annotations

from django.contrib import admin

from console.dashboard import dashboard_context


class ThreadlineAdminSite(admin.AdminSite):
    site_header = "Threadline console"
    site_title = "Threadline"
    index_title = "Dashboard"
    index_template = "admin/threadline_dashboard.html"

    def index(self, request, extra_context=None):
        return super().index(request, {**dashboard_context(), **(extra_context or {})})
