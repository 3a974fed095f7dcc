from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from common.api.exceptions import api_not_found
from common.health import healthz, readyz
from console.metrics import metrics_view
from console.views import root

api_v1 = [
    path("", include("threads.api.urls")),
    path("", include("sessions_app.api.urls")),
    path("", include("handoffs.api.urls")),
]

urlpatterns = [
    path("", root, name="root"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    # Last: any other path under /api/ answers the JSON error body, with DEBUG on too (Django
    # then shows its HTML technical 404 page instead of calling handler404).
    # csrf_exempt: a POST there is a 404 too, not CSRF's HTML 403 (no view reads a cookie).
    re_path(r"^api/(?!schema$|docs$)", csrf_exempt(api_not_found)),  # /api/schema → …/
]

handler404 = "common.api.exceptions.api_not_found"
handler500 = "common.api.exceptions.api_server_error"
