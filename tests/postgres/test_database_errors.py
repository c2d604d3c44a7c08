"""explain_clone_failure on the messages as the provider and drivers report them (no server needed;
the real server's message is covered by test_provider_sql and test_database_model)."""

from __future__ import annotations

import pytest

from oduflow_iac.database_errors import explain_clone_failure

PROVIDER = (
    'Error creating database "oduflow_1_main": pq: source database "oduflow_template_1_default" '
    "is being accessed by other users"
)


def test_in_use_as_the_provider_reports_it() -> None:
    text = explain_clone_failure(PROVIDER)
    assert text is not None
    assert 'database "oduflow_1_main"' in text
    assert 'template database "oduflow_template_1_default"' in text
    assert "another session is connected" in text
    assert "WHERE datname = 'oduflow_template_1_default' AND pid <> pg_backend_pid()" in text
    assert "pg_terminate_backend" in text and "again" in text


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("There is 1 other session using the database.", "1 other session is connected"),
        ("There are 3 other sessions using the database.", "3 other sessions are connected"),
        ("There is 1 prepared transaction using the database.", "1 prepared transaction holds"),
    ],
)
def test_in_use_counts_the_sessions(detail: str, expected: str) -> None:
    text = explain_clone_failure(f"{PROVIDER}\nDETAIL: {detail}")
    assert text is not None and expected in text


def test_names_with_quotes_are_unescaped_and_quoted_in_sql() -> None:
    text = explain_clone_failure('source database "it\'s ""odd""" is being accessed by other users')
    assert text is not None
    assert 'template database "it\'s "odd""' in text
    assert "WHERE datname = 'it''s \"odd\"'" in text


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('ERROR: template database "oduflow_template_2_v18" does not exist', "does not exist on the server"),
        ('permission denied to copy database "oduflow_template_2_v18"', "IS_TEMPLATE"),
        (
            "new collation (C.UTF-8) is incompatible with the collation of the template database (C)",
            "differs from the template's (C)",
        ),
        ('Error creating database "oduflow_1_main": pq: database "oduflow_1_main" already exists', "delete-before"),
    ],
)
def test_other_clone_failures(message: str, expected: str) -> None:
    text = explain_clone_failure(message)
    assert text is not None and expected in text


@pytest.mark.parametrize(
    "message", ["", "connection refused", 'database "oduflow_1_main" is being accessed by other users']
)
def test_unrelated_messages_are_not_explained(message: str) -> None:
    assert explain_clone_failure(message) is None
