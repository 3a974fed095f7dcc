from rest_framework.routers import SimpleRouter

from threads.api.views import EventViewSet, ProjectViewSet, ThreadViewSet

# Both `/threads/{id}/archive` (as DESIGN.md writes actions) and a trailing slash work.
router = SimpleRouter()
router.trailing_slash = "/?"
router.register("projects", ProjectViewSet, basename="project")
router.register("threads", ThreadViewSet, basename="thread")
router.register("events", EventViewSet, basename="event")

urlpatterns = router.urls
