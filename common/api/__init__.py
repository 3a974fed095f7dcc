"""The API base classes every app's API builds on: tenant scoping, the error body, pagination,
parsers with size limits, the throttle, schema helpers. Imports nothing of the project."""
