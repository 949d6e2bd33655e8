"""Typed errors. The CLI translates them once, at the edge, into messages and exit codes."""

from __future__ import annotations

from dataclasses import dataclass

# The CLI's exit codes (README, "Exit codes").
EXIT_FAILED = 1  # a rule, a check or a rule file failed
EXIT_USAGE = 2  # usage, configuration or connection error
EXIT_SKIPPED = 3  # a backfill skipped rules that another run held


class PlauditError(Exception):
    """Base of every error plaudit raises on purpose."""

    exit_code = EXIT_USAGE


class ConfigError(PlauditError):
    """plaudit.yaml or the command line is wrong (exit 2)."""


class NoProject(ConfigError):
    """No database was named and there is no embedded cluster to use: the folder is not a
    project, or the command may not create one (exit 2)."""


class ConnectionFailed(PlauditError):
    """The database cannot be reached or started (exit 2)."""


class ClusterError(ConnectionFailed):
    """The embedded local cluster cannot be created, started or stopped."""


class UnsupportedServer(PlauditError):
    """The PostgreSQL server is older than plaudit supports (exit 2)."""


class SchemaTooNew(PlauditError):
    """The database's schema has migrations this plaudit does not know: a newer plaudit
    installed it (exit 2). Nothing is changed; upgrade plaudit to use that database."""


@dataclass(frozen=True)
class Problem:
    """One problem in a rule file, located at file:line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class RuleError(PlauditError):
    """One or more rule files are invalid. Carries every problem found, not just the first."""

    exit_code = 1

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class ParamError(PlauditError):
    """A --param value is unknown or does not have the rule's declared type (exit 2)."""


class RenderError(PlauditError):
    """A rule's template or query cannot be rendered into a single SELECT (exit 1)."""

    exit_code = 1


class DatabaseError(PlauditError):
    """An unexpected database error, in the server's words (exit 2). `query` names the
    plaudit query that hit it, for `-v`: an internal name is not the user's business."""

    exit_code = 2

    def __init__(self, message: str, query: str | None = None):
        super().__init__(message)
        self.query = query


class SchemaMissing(DatabaseError):
    """The database has no plaudit schema, or an older one than this code (exit 2)."""


class InvalidCredential(PlauditError):
    """`export --format ob3 --validate` found a credential that is not valid Open Badges 3.0
    (exit 1): a missing required field, or a property no JSON-LD context defines."""

    exit_code = 1
