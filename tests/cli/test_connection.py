from __future__ import annotations

from pathlib import Path

from creditmeter.cli.connection import missing_sqlite_file, shown


def test_shown_urls_hide_their_password() -> None:
    url = "postgresql+psycopg://app:s3cret@db.example:5432/credits"
    assert shown(url) == "postgresql+psycopg://app:***@db.example:5432/credits"
    assert shown(None) == "sqlite:///creditmeter.db"


def test_only_a_sqlite_file_that_does_not_exist_is_missing(tmp_path: Path) -> None:
    here = tmp_path / "here.db"
    here.touch()
    assert missing_sqlite_file(f"sqlite:///{here}") is None
    assert missing_sqlite_file(f"sqlite:///{tmp_path / 'gone.db'}") == tmp_path / "gone.db"
    assert missing_sqlite_file("sqlite://") is None
    assert missing_sqlite_file("postgresql://127.0.0.1/test") is None
