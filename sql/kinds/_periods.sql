{#-
  Calendar periods for streak and growth rules: days, ISO weeks (Monday to Sunday) and
  calendar months, in the rule's time zone. A period is named by its first local day (a
  date), so period arithmetic is date arithmetic: a DST change makes a day 23 or 25 hours
  long but never adds or removes one. `period` is day | week | month (checked on load) and
  the time zone is quoted with sqlstring.
-#}

{#- The period holding the instant `ts`, as the date of its first local day. -#}
{% macro period_start(ts, period, timezone) -%}
date_trunc('{{ period }}', ({{ ts }})::timestamptz AT TIME ZONE {{ timezone | sqlstring }})::date
{%- endmacro %}

{#- Consecutive periods have consecutive numbers (2000-01-03 is a Monday). -#}
{% macro period_number(day, period) -%}
{%- if period == 'day' -%}
({{ day }} - DATE '2000-01-03')
{%- elif period == 'week' -%}
(({{ day }} - DATE '2000-01-03') / 7)
{%- else -%}
(12 * extract(year FROM {{ day }})::int + extract(month FROM {{ day }})::int)
{%- endif -%}
{%- endmacro %}

{#- The first day of the period `n` periods after the one starting on `day`, as a date. -#}
{% macro period_shift(day, n, period) -%}
({{ day }} + interval '1 {{ period }}' * ({{ n }}))::date
{%- endmacro %}

{#- The instant the period `n` periods after the one starting on `day` begins. -#}
{% macro period_begins(day, n, period, timezone) -%}
(({{ day }} + interval '1 {{ period }}' * ({{ n }})) AT TIME ZONE {{ timezone | sqlstring }})
{%- endmacro %}
