"""The OpenAPI schema (/api/schema/) and its docs page (/api/docs/): every endpoint of the
threads API with its request body, its success response and its error responses."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db

# What any request body can earn: malformed, chunked (no Content-Length), too large, not JSON.
BODY = {400, 411, 413, 415}
ALWAYS = {401, 429}

# path → method → (success statuses, error statuses, takes a request body)
# Restoring a cold thread first can fail: 503 (cold storage) and 409 thread_busy.
HYDRATES = {409, 503}
ENDPOINTS: dict[str, dict[str, tuple[set[int], set[int], bool]]] = {
    "/api/v1/projects/": {
        "get": ({200}, {400}, False),
        "post": ({201}, BODY, True),
    },
    "/api/v1/projects/{id}/": {
        "get": ({200}, {404}, False),
        "patch": ({200}, BODY | {404}, True),
    },
    "/api/v1/threads/": {
        "get": ({200}, {400}, False),
        "post": ({201}, BODY | {404}, True),
    },
    "/api/v1/threads/{id}/": {
        "get": ({200}, {404}, False),
        "patch": ({200}, BODY | {404, 409, 412}, True),
        "delete": ({204}, {404, 409}, False),
    },
    "/api/v1/threads/{id}/archive/": {"post": ({200}, {404, 409}, False)},
    "/api/v1/threads/{id}/close/": {"post": ({200}, {404, 409}, False)},
    "/api/v1/threads/{id}/open/": {"post": ({200}, {404, 409}, False)},
    "/api/v1/threads/{id}/fork/": {"post": ({201}, BODY | HYDRATES | {404}, True)},
    "/api/v1/threads/{id}/state/": {
        "get": ({200}, {404}, False),
        "put": ({200}, BODY | HYDRATES | {404, 409}, True),
    },
    "/api/v1/threads/{id}/messages/": {
        "get": ({200}, HYDRATES | {400, 404}, False),
        "post": ({200, 201}, BODY | HYDRATES | {404, 409}, True),
        "put": ({200}, BODY | HYDRATES | {404, 409}, True),
    },
    "/api/v1/threads/{id}/messages/truncate/": {
        "post": ({200}, BODY | HYDRATES | {404, 409}, True)
    },
    "/api/v1/events/": {"get": ({200}, {400, 404}, False)},
}

OPERATIONS = [
    (path, method, *spec) for path, methods in ENDPOINTS.items() for method, spec in methods.items()
]


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict:
    from django.test import Client

    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


def test_the_schema_answers_without_an_api_key(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Threadline API"


def test_the_schema_lists_every_path_of_the_threads_api(schema):
    assert set(ENDPOINTS) <= set(schema["paths"])
    for path, methods in ENDPOINTS.items():
        documented = set(schema["paths"][path]) - {"parameters"}
        assert documented == set(methods), path


def every_operation(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield f"{method.upper()} {path}", operation


def test_every_operation_of_the_api_documents_its_errors(schema):
    """Not only the threads API: whatever later issues add is held to the same rule."""
    for name, operation in every_operation(schema):
        responses = {int(status): r for status, r in operation["responses"].items()}
        assert ALWAYS <= set(responses), name
        assert any(200 <= status < 300 for status in responses), name
        for status, response in responses.items():
            if status >= 400:
                schema_ref = response["content"]["application/json"]["schema"]
                assert schema_ref == {"$ref": "#/components/schemas/Error"}, (name, status)
        if "requestBody" in operation:
            assert 400 in responses, name


@pytest.mark.parametrize(("path", "method", "successes", "failures", "has_body"), OPERATIONS)
def test_every_operation_describes_its_body_and_responses(
    schema, path, method, successes, failures, has_body
):
    operation = schema["paths"][path][method]
    responses = {int(status): response for status, response in operation["responses"].items()}

    assert operation.get("summary"), "a summary for the docs"
    assert set(responses) == successes | failures | ALWAYS
    for status in successes - {204}:
        assert "application/json" in responses[status]["content"], status
    for status in failures | ALWAYS:
        content = responses[status]["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/Error"}, status
        assert responses[status]["description"], status

    if has_body:
        assert "application/json" in operation["requestBody"]["content"]
    else:
        assert "requestBody" not in operation
    assert operation["security"] == [{"ApiKey": []}]


def test_the_error_body_is_described_once(schema):
    components = schema["components"]["schemas"]
    error = components["Error"]
    assert error["required"] == ["error"]
    detail = components["ErrorDetail"]
    assert set(detail["properties"]) == {"code", "message", "details"}
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
    }


def test_conflicts_name_their_codes(schema):
    def conflict(path, method):
        return schema["paths"][path][method]["responses"]["409"]["description"]

    assert "thread_archived" in conflict("/api/v1/threads/{id}/messages/", "post")
    assert "thread_not_empty" in conflict("/api/v1/threads/{id}/", "delete")
    assert (
        "stale_version"
        in schema["paths"]["/api/v1/threads/{id}/"]["patch"]["responses"]["412"]["description"]
    )


def test_thread_responses_carry_the_etag_and_patch_takes_if_match(schema):
    thread = schema["paths"]["/api/v1/threads/{id}/"]
    assert "ETag" in thread["get"]["responses"]["200"]["headers"]
    assert "ETag" in thread["patch"]["responses"]["200"]["headers"]
    headers = {p["name"] for p in thread["patch"]["parameters"] if p["in"] == "header"}
    assert headers == {"If-Match"}
    created = schema["paths"]["/api/v1/threads/"]["post"]["responses"]["201"]
    assert "ETag" in created["headers"]


def test_lists_document_their_filters_and_cursor_pagination(schema):
    def parameters(path):
        return {p["name"] for p in schema["paths"][path]["get"].get("parameters", [])}

    assert {"project", "status", "lifecycle", "tier", "q", "fields", "cursor", "limit"} <= (
        parameters("/api/v1/threads/")
    )
    assert {"thread", "session", "kind", "after", "cursor", "limit"} <= parameters(
        "/api/v1/events/"
    )
    assert {"after_seq", "cursor", "limit"} <= parameters("/api/v1/threads/{id}/messages/")
    page = schema["components"]["schemas"]["PaginatedThreadSparseList"]
    assert set(page["properties"]) == {"results", "next"}


def test_thread_list_items_require_no_field_since_fields_can_omit_any(schema):
    """A generated client raised KeyError on `?fields=id` items: every field was required."""
    schemas = schema["components"]["schemas"]
    page = schemas["PaginatedThreadSparseList"]["properties"]["results"]
    assert page["items"]["$ref"].endswith("/ThreadSparse")
    assert "required" not in schemas["ThreadSparse"]
    assert set(schemas["ThreadSparse"]["properties"]) == set(schemas["Thread"]["properties"])
    assert "id" in schemas["Thread"]["required"]


def test_the_schema_validates_without_warnings(tmp_path):
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    document = yaml.safe_load(target.read_text())
    assert set(ENDPOINTS) <= set(document["paths"])


def test_the_docs_page_renders(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"/api/schema/" in response.content
