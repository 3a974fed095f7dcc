"""`Authorization: Bearer <api key>` → the key's tenant, for every API request."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from common.api.authentication import TenantPrincipal
from threads.tenancy import api_key_authenticate


class ApiKeyAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Malformed Authorization header: use 'Bearer <key>'.")

        try:
            secret = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid or revoked API key.") from None
        api_key = api_key_authenticate(secret=secret)
        if api_key is None:
            raise AuthenticationFailed("Invalid or revoked API key.")
        return TenantPrincipal(tenant=api_key.tenant, api_key=api_key), api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="threadline"'
