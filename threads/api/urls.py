from rest_framework.routers import SimpleRouter

from threads.api.conversation_views import ThreadConversationViewSet
from threads.api.portability_views import ThreadPortabilityViewSet
from threads.api.views import EventViewSet, ProjectViewSet, ThreadViewSet

# Both `/threads/{id}/archive` (as DESIGN.md writes actions) and a trailing slash work.
router = SimpleRouter()
router.trailing_slash = "/?"
router.register("projects", ProjectViewSet, basename="project")
router.register("threads", ThreadViewSet, basename="thread")
# Compaction, warming and the steering queue: more actions under /threads/{id}/.
router.register("threads", ThreadConversationViewSet, basename="thread-conversation")
# Export and import (threads/portability).
router.register("threads", ThreadPortabilityViewSet, basename="thread-portability")
router.register("events", EventViewSet, basename="event")

urlpatterns = router.urls
