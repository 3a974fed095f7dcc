"""Content negotiation (common/api/negotiation.py): JSON for what API clients send, the
default negotiation's answers for everything else."""

from __future__ import annotations

import pytest

from tests.conftest import assert_error


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", " application/json "])
def test_plain_accept_headers_get_json(api, thread, accept):
    extra = {} if accept is None else {"HTTP_ACCEPT": accept}
    response = api.get(f"/api/v1/threads/{thread.id}/", **extra)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["id"] == thread.id


@pytest.mark.parametrize(
    "accept", ["application/json; q=0.9, text/html; q=0.1", "application/*", "*/*; q=0.5"]
)
def test_other_accept_headers_that_allow_json_still_get_json(api, thread, accept):
    response = api.get(f"/api/v1/threads/{thread.id}/", HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response.json()["id"] == thread.id


def test_a_type_the_api_cannot_render_is_406_with_the_error_body(api, thread):
    response = api.get(f"/api/v1/threads/{thread.id}/", HTTP_ACCEPT="application/xml")
    assert_error(response, 406, "not_acceptable")


def test_an_unknown_format_override_is_404_as_before(api, thread):
    response = api.get(f"/api/v1/threads/{thread.id}/", {"format": "xml"})
    assert response.status_code == 404
