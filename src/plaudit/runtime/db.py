"""Finding and connecting to the database; psycopg errors are wrapped here, once."""

from __future__ import annotations

import re
from collections.abc import Generator, Sequence
from datetime import UTC, date, datetime, tzinfo
from functools import cache
from typing import Any

import jinja2
import psycopg
from psycopg import postgres
from psycopg.abc import Buffer
from psycopg.adapt import Dumper
from psycopg.rows import dict_row
from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader

from plaudit.errors import ConnectionFailed, DatabaseError, SchemaMissing
from plaudit.model.config import DEFAULTS
from plaudit.sqlfiles import query

# A password in a connection string: in a URL (`://user:secret@`) or a keyword (`password=`).
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def masked(text: str) -> str:
    """`text` (a connection string, or a message quoting one) with every password replaced
    by ***: what errors, logs and output may show."""
    return _KEYWORD_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def connect(dsn: str) -> psycopg.Connection[dict[str, Any]]:
    """A connection with positional `$n` placeholders (RawCursor), dict rows, and
    PostgreSQL's infinite dates read as InfiniteDatetime/InfiniteDate."""
    try:
        conn = psycopg.connect(
            dsn, autocommit=True, row_factory=dict_row, cursor_factory=psycopg.RawCursor
        )
    except psycopg.OperationalError as exc:
        where = masked(dsn) or "the server named by the PG* environment variables"
        raise ConnectionFailed(
            f"cannot connect to {where}: {masked(str(exc).strip())}") from None
    except psycopg.ProgrammingError as exc:  # libpq could not parse it
        raise ConnectionFailed(
            f"the connection string is not valid: {masked(str(exc).strip())} "
            "(expected a URL like postgresql://user@host/dbname, or key=value pairs)"
        ) from None
    conn.adapters.register_loader("timestamptz", _InfiniteTimestamptzLoader)
    conn.adapters.register_loader("timestamp", _InfiniteTimestampLoader)
    conn.adapters.register_loader("date", _InfiniteDateLoader)
    conn.adapters.register_dumper(InfiniteDatetime, _InfiniteDatetimeDumper)
    conn.adapters.register_dumper(InfiniteDate, _InfiniteDateDumper)
    return conn


# -- infinite dates ---------------------------------------------------------------------------
# PostgreSQL has 'infinity' and '-infinity' timestamps and dates; Python has neither, and
# psycopg fails to load them ("timestamp too large"). One app row dated 'infinity' then made
# every `plaudit run` die reading its grants, rolling back the same batch forever. plaudit's
# connections load them as these: the latest (earliest) datetime or date, which order as
# PostgreSQL orders them, print as PostgreSQL prints them, and go back to it as themselves
# (their own dumpers).


class InfiniteDatetime(datetime):
    """'infinity' or '-infinity' as a datetime: datetime.max or datetime.min that says so."""

    text: str

    def __new__(cls, text: str, tz: tzinfo | None = UTC) -> InfiniteDatetime:
        bound = datetime.max if text == "infinity" else datetime.min
        self = super().__new__(
            cls, bound.year, bound.month, bound.day, bound.hour, bound.minute, bound.second,
            bound.microsecond, tzinfo=tz,
        )  # fmt: skip
        self.text = text
        return self

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"InfiniteDatetime({self.text!r})"

    def __format__(self, spec: str) -> str:
        return self.text

    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        return self.text

    def strftime(self, format: str) -> str:
        return self.text

    def astimezone(self, tz: tzinfo | None = None) -> InfiniteDatetime:
        return self  # the same instant in every zone (and no overflow at the calendar's end)


class InfiniteDate(date):
    """'infinity' or '-infinity' as a date: date.max or date.min that says so."""

    text: str

    def __new__(cls, text: str) -> InfiniteDate:
        bound = date.max if text == "infinity" else date.min
        self = super().__new__(cls, bound.year, bound.month, bound.day)
        self.text = text
        return self

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"InfiniteDate({self.text!r})"

    def __format__(self, spec: str) -> str:
        return self.text

    def isoformat(self) -> str:
        return self.text

    def strftime(self, format: str) -> str:
        return self.text


_INFINITIES = (b"infinity", b"-infinity")


class _InfiniteDatetimeDumper(Dumper):
    oid = postgres.types["timestamptz"].oid

    def dump(self, obj: InfiniteDatetime) -> Buffer:
        return obj.text.encode()


class _InfiniteDateDumper(Dumper):
    oid = postgres.types["date"].oid

    def dump(self, obj: InfiniteDate) -> Buffer:
        return obj.text.encode()


class _InfiniteTimestamptzLoader(TimestamptzLoader):
    def load(self, data: Buffer) -> datetime:
        text = bytes(data)
        if text in _INFINITIES:
            return InfiniteDatetime(text.decode(), UTC)
        return super().load(data)


class _InfiniteTimestampLoader(TimestampLoader):
    def load(self, data: Buffer) -> datetime:
        text = bytes(data)
        if text in _INFINITIES:
            return InfiniteDatetime(text.decode(), None)
        return super().load(data)


class _InfiniteDateLoader(DateLoader):
    def load(self, data: Buffer) -> date:
        text = bytes(data)
        if text in _INFINITIES:
            return InfiniteDate(text.decode())
        return super().load(data)


@cache
def _template(text: str) -> jinja2.Template:
    return jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False).from_string(text)


def render_sql(text: str, schema: str, **context: Any) -> str:
    """A plaudit .sql file for the configured schema (trusted files, not analyst SQL), with
    plaudit.yaml's defaults as {{ defaults.<name> }}."""
    return _template(text).render(schema=schema, defaults=DEFAULTS, **context)


# rows per chunk of a streamed query (Database.stream): a few hundred kB of grants
_STREAM_CHUNK = 1000

# undefined table, schema or function: what a missing or outdated plaudit schema raises
_UNDEFINED = ("42P01", "3F000", "42883")


class Database:
    """A connection plus the configured schema: runs plaudit's named queries."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]], schema: str):
        self.conn = conn
        self.schema = schema

    def sql(self, name: str) -> str:
        return render_sql(query(name), self.schema)

    def execute(self, name: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run the named query and return its rows; database errors name the query."""
        try:
            cur = self.conn.execute(self.sql(name), params)
            return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise self.error(exc, name) from exc

    def stream(
        self, name: str, params: Sequence[Any] = ()
    ) -> Generator[dict[str, Any], None, None]:
        """The named query's rows one at a time as the server sends them, never all in
        memory (an export of millions of grants). The connection runs nothing else until the
        rows are read or the generator is closed."""
        # libpq 17 fetches rows in chunks (fewer round trips); older ones, one at a time
        size = _STREAM_CHUNK if psycopg.pq.version() >= 170000 else 1
        try:
            yield from self.conn.cursor().stream(self.sql(name), params, size=size)
        except psycopg.Error as exc:
            raise self.error(exc, name) from exc

    def error(self, exc: psycopg.Error, query: str) -> DatabaseError:
        """A database error in words: a plaudit object that does not exist means the schema
        is missing or older than this code."""
        message = describe(exc)
        if exc.sqlstate in _UNDEFINED and (
            f'"{self.schema}.' in message or f'schema "{self.schema}"' in message
            or f" {self.schema}." in message
        ):
            return SchemaMissing(
                f"database {self.conn.info.dbname} has no plaudit schema ({self.schema}), or "
                f"one older than this plaudit: run `plaudit init` ({message})", query)
        return DatabaseError(message, query)

    def one(self, name: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self.execute(name, params)
        return rows[0] if rows else None

    def script(self, text: str, what: str) -> None:
        """Run a multi-statement script (no parameters) such as a schema file."""
        try:
            self.conn.execute(text)
        except psycopg.Error as exc:
            raise DatabaseError(f"{what}: {describe(exc)}") from exc

    def close(self) -> None:
        self.conn.close()


def describe(exc: psycopg.Error) -> str:
    """The server's message, with its detail and hint when there are any."""
    diag = exc.diag
    parts = [(diag.message_primary or str(exc)).strip()]
    if diag.message_detail:
        parts.append(f"DETAIL: {diag.message_detail}")
    if diag.message_hint:
        parts.append(f"HINT: {diag.message_hint}")
    return "\n".join(parts)
