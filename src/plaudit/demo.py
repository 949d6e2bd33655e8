"""The demo community app: its tables and data, generated inside the database."""

from __future__ import annotations

from .db import Database
from .errors import ConfigError
from .sqlfiles import sql_dir


def load_demo_data(db: Database, users: int, activities: int) -> dict[str, int]:
    """Create the demo app's tables and fill them: {table: rows}. Deterministic."""
    foreign = db.one("demo_tables_foreign")
    if foreign:
        raise ConfigError(
            f"this database already has a {foreign['table_name']} table that is not the "
            "demo's; the demo truncates its tables, so run it on the embedded cluster "
            "(no --dsn) or an empty database"
        )
    with db.conn.transaction():
        for name in ("schema.sql", "generate.sql"):
            db.script((sql_dir() / "demo" / name).read_text(), f"demo/{name}")
        rows = db.execute("demo_generate", [users, activities])
    return {row["table_name"]: row["row_count"] for row in rows}
