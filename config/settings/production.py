"""Production settings: refuse to start without a real secret and host list, or with DEBUG on.

HTTPS is assumed to end at a proxy or load balancer in front of gunicorn that sets
`X-Forwarded-Proto: https`. Every security setting below has a documented variable (README,
"Configuration"); `manage.py check --deploy` is clean with the defaults.
"""

from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str
from config.settings.base import *  # noqa: F403

MIN_SECRET_KEY_LENGTH = 50

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
if len(SECRET_KEY) < MIN_SECRET_KEY_LENGTH or len(set(SECRET_KEY)) < 5:
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY must be set in production to a random value of at least "
        f"{MIN_SECRET_KEY_LENGTH} characters (e.g. python -c 'import secrets; "
        f"print(secrets.token_urlsafe(64))')"
    )
# Never DEBUG in production: its technical 500 page shows settings and local variables
# (the database password among them) to whoever triggers an error.
if env_bool("DJANGO_DEBUG", False):
    raise ImproperlyConfigured("DJANGO_DEBUG must be off in production")
DEBUG = False
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set in production")

# The proxy in front terminates TLS and says so in X-Forwarded-Proto. Set
# DJANGO_SECURE_PROXY_SSL_HEADER=false only when clients reach gunicorn directly over TLS.
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", True):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
# Load balancers' health checks speak plain HTTP to the instance: never redirect them.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# Preloading is a promise to browsers that the domain and every subdomain speak HTTPS for
# good; it is the operator's to make. Until then check --deploy's reminder (W021) is off.
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
if not SECURE_HSTS_PRELOAD:
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
