from rest_framework.routers import SimpleRouter

from sessions_app.api.retention_views import SubSessionRetentionViewSet
from sessions_app.api.views import SessionViewSet

# Both `/sessions/{id}/turns/start` (as DESIGN.md writes actions) and a trailing slash work.
router = SimpleRouter()
router.trailing_slash = "/?"
router.register("sessions", SessionViewSet, basename="session")
# Retention: archive / restore a sub-session.
router.register("subsessions", SubSessionRetentionViewSet, basename="subsession-retention")

urlpatterns = router.urls
