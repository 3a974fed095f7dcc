"""`/`: a small page that points to the console, the API docs and the health endpoints."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_safe


@require_safe
def root(request):
    return render(request, "console/root.html", {"metrics_on": bool(settings.METRICS_TOKEN)})
