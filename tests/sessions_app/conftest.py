from tests.sessions_app.fixtures import (  # noqa: F401 — fixtures
    git_repo,
    make_session,
    session,
    workspace_root,
)
