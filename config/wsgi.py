import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from config.slowbody import BodyDeadline

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
application = BodyDeadline(
    get_wsgi_application(),
    seconds=settings.REQUEST_BODY_TIMEOUT_SECONDS,
    max_bytes=settings.MAX_REQUEST_BYTES,
)
