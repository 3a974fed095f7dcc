from rest_framework.routers import SimpleRouter

from handoffs.api.views import HandoffViewSet

router = SimpleRouter()
router.trailing_slash = "/?"
router.register("handoffs", HandoffViewSet, basename="handoff")

urlpatterns = router.urls
