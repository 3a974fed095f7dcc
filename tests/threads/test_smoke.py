from tests.conftest import assert_error


def test_a_thread_can_be_created_and_messages_appended(api, project):
    response = api.post("/api/v1/threads/", {"project": project.id, "title": "Hi"})
    assert response.status_code == 201, response.content
    thread_id = response.json()["id"]
    assert response["ETag"] == '"1"'

    response = api.post(
        f"/api/v1/threads/{thread_id}/messages",
        {"messages": [{"id": "a", "role": "user", "content": "hello"}]},
    )
    assert response.status_code == 201, response.content
    assert response.json() == {
        "appended": 1,
        "duplicates": 0,
        "messages": [{"id": "a", "seq": 1}],
        "last_seq": 1,
    }

    response = api.get(f"/api/v1/threads/{thread_id}/messages")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["results"]] == ["a"]


def test_a_missing_key_is_401(client, db):
    assert_error(client.get("/api/v1/threads/"), 401, "unauthenticated")
