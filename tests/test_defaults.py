"""plaudit.yaml's defaults and duration grammar are written once, in plaudit.model.config:
the schema files get the defaults as template variables, and the database reads a duration
as Python does."""

from __future__ import annotations

import re

import pytest

from plaudit.model.config import DEFAULTS, Config, is_duration, milliseconds
from plaudit.sqlfiles import schema_files


def test_the_config_defaults_are_the_registry_of_defaults(tmp_path):
    config = Config(project_dir=tmp_path, rules_dir=tmp_path / "rules")
    assert {name: getattr(config, name) for name in DEFAULTS} == dict(DEFAULTS)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_no_schema_file_spells_a_default_itself(name):
    literal = re.compile(rf"'\s*{re.escape(DEFAULTS[name])}\s*'")
    for path in schema_files():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            assert not literal.search(line), f"{path.name}:{number}: use {{{{ defaults.{name} }}}}"


def test_the_installed_functions_default_to_the_configs_values(sql):
    arguments = dict(sql(
        "SELECT p.proname, pg_get_function_arguments(p.oid) FROM pg_proc AS p "
        "WHERE p.pronamespace = 'plaudit'::regnamespace "
        "AND p.proname IN ('job_events', 'job_nightly', 'prune')"))
    timeout = f"p_timeout text DEFAULT '{DEFAULTS['statement_timeout']}'::text"
    assert timeout in arguments["job_events"]
    assert f"DEFAULT '{DEFAULTS['backfill_timeout']}'::text" in arguments["job_nightly"]
    assert f"DEFAULT '{DEFAULTS['retention_runs']}'::interval" in arguments["prune"]
    for function in ("run_rule", "award_badge"):
        [(body,)] = sql("SELECT string_agg(pg_get_functiondef(p.oid), '') FROM pg_proc AS p "
                        "WHERE p.pronamespace = 'plaudit'::regnamespace AND p.proname = %s",
                        [function])
        assert f"'{DEFAULTS['notify_channel']}'" in body


@pytest.mark.parametrize("duration", ["60s", "500ms", "5min", "1h", "250", " 30 s ", "0"])
def test_the_database_reads_a_duration_as_python_does(sql, duration):
    assert is_duration(duration)
    [(ms,)] = sql("SELECT (extract(epoch FROM plaudit.timeout_interval(%s)) * 1000)::bigint",
                  [duration])
    assert ms == milliseconds(duration)
