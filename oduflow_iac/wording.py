"""Small pieces of the CLI's wording, in one place so every command says things the same way."""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`1 team`, `2 teams`, `0 environments`; `plural_form` for irregular words."""
    word = singular if count == 1 else (plural_form or f"{singular}s")
    return f"{count} {word}"
