"""The badge's face: how a badge shows in a trophy case, beside what earns it.

A rule file's `category`, `secret`, `order` and `i18n:` (its level `description`s and
`hint`s are read with the levels, model/rules.py), and plaudit.yaml's `categories:`, the
trophy case's sections in order. None of it reaches the compiled SQL, so changing it never
makes a rule due for a backfill.

Translations are looked up by locale with a fallback chain (plaudit.localized, in SQL):
`fr-CA` tries fr-CA, then fr, then the rule's own text. Locales compare case-insensitively,
so they are kept lower-case here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plaudit.errors import Problem
from plaudit.model.yamlsource import Fields, LocatedDict, is_text

if TYPE_CHECKING:  # annotations only: rules.py and config.py import this module
    from plaudit.model.config import Config
    from plaudit.model.rules import Rule

# A BCP 47 language tag as rule files and plaudit.yaml write them: fr, pt-BR, zh-Hant-TW.
LOCALE_PATTERN = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
LOCALE_REQUIREMENT = "must be a locale like fr or pt-BR"
def is_locale(text: str) -> bool:
    """A locale as asked for (`plaudit user --locale`): a tag like those of rule files, where
    '_' may stand for '-' (fr_CA, as in LANG)."""
    return LOCALE_PATTERN.fullmatch(text.replace("_", "-")) is not None


# Category keys are written like slugs (config.NAME_PATTERN, which imports this module).
CATEGORY_PATTERN = re.compile(r"[a-z0-9_]+")
I18N_KEYS = ("name", "description", "levels")
I18N_LEVEL_KEYS = ("name", "description", "hint")
CATEGORY_KEYS = ("name", "i18n")


@dataclass(frozen=True)
class LevelText:
    """A level's texts in one locale; None where the rule's own text stands."""

    key: str
    name: str | None = None
    description: str | None = None
    hint: str | None = None


@dataclass(frozen=True)
class Translation:
    """A badge's texts in one locale (lower-case, as looked up)."""

    locale: str
    name: str | None = None
    description: str | None = None
    levels: tuple[LevelText, ...] = ()


@dataclass(frozen=True)
class Category:
    """A section of the trophy case (plaudit.yaml `categories:`), in the order written."""

    key: str
    name: str
    names: tuple[tuple[str, str], ...] = ()  # (locale, name)
    line: int = 1


def translations_json(translations: Sequence[Translation]) -> dict[str, Any]:
    """{locale: {name, description, levels: {key: {name, description, hint}}}}, what is
    stored in plaudit.badge.i18n, without the texts left to the rule."""
    result: dict[str, Any] = {}
    for t in translations:
        levels = {lv.key: _present(name=lv.name, description=lv.description, hint=lv.hint)
                  for lv in t.levels}
        body: dict[str, Any] = _present(name=t.name, description=t.description)
        if levels:
            body["levels"] = levels
        result[t.locale] = body
    return result


def categories_json(categories: Sequence[Category]) -> list[dict[str, Any]]:
    """What configure syncs into plaudit.category: [{key, name, i18n: {locale: name}}]."""
    return [{"key": c.key, "name": c.name, "i18n": dict(c.names)} for c in categories]


def _present(**texts: str | None) -> dict[str, str]:
    return {key: text for key, text in texts.items() if text is not None}


def read_i18n(
    fields: Fields, document: LocatedDict, level_keys: Collection[str]
) -> tuple[Translation, ...]:
    """A rule's `i18n:`: {locale: {name, description, levels: {key: {name, description,
    hint}}}}; every locale, key and level checked at its line."""
    specs = _mapping(fields, document, "i18n", "must be a mapping of locale to texts, "
                     "like {fr: {name: ...}}")
    translations = []
    for locale, spec in _locales(fields, specs, "i18n"):
        if not isinstance(spec, LocatedDict):
            message = f"i18n.{locale} must be a mapping of name, description and levels"
            fields.problem(specs.value_line(locale), message)
            continue
        fields.check_keys(spec, I18N_KEYS)
        name = fields.text(spec, "name", label=f"i18n.{locale}.name")
        description = fields.text(spec, "description", label=f"i18n.{locale}.description")
        levels = _level_texts(fields, spec, locale, level_keys)
        translations.append(Translation(locale.lower(), name, description, levels))
    return tuple(translations)


def _level_texts(
    fields: Fields, spec: LocatedDict, locale: str, level_keys: Collection[str]
) -> tuple[LevelText, ...]:
    where = f"i18n.{locale}.levels"
    levels = _mapping(fields, spec, "levels", "must be a mapping of level key to texts, "
                      "like {bronze: {name: ...}}", label=where)
    texts = []
    for key, level in (levels or {}).items():
        if key not in level_keys:
            known = ", ".join(level_keys)
            message = f"{where}: '{key}' is not a level of this rule (its levels: {known})"
            fields.problem(levels.key_line(key), message)
            continue
        if not isinstance(level, LocatedDict):
            message = f"{where}.{key} must be a mapping of name, description and hint"
            fields.problem(levels.value_line(key), message)
            continue
        fields.check_keys(level, I18N_LEVEL_KEYS)
        name, description, hint = (fields.text(level, text, label=f"{where}.{key}.{text}")
                                   for text in I18N_LEVEL_KEYS)
        texts.append(LevelText(key, name, description, hint))
    return tuple(texts)


def read_categories(fields: Fields, document: LocatedDict) -> tuple[Category, ...]:
    """plaudit.yaml's `categories:`: {key: name} or {key: {name, i18n: {locale: name}}}, in
    the order the trophy case shows them."""
    specs = _mapping(fields, document, "categories", "must be a mapping of category key to "
                     "name, in the order the trophy case shows them")
    categories = []
    for key, spec in (specs or {}).items():
        line = specs.key_line(key)
        if CATEGORY_PATTERN.fullmatch(key) is None:
            fields.problem(line, f"category '{key}' must match {CATEGORY_PATTERN.pattern}")
        elif is_text(spec):
            categories.append(Category(key, spec.strip(), (), line))
        elif isinstance(spec, LocatedDict):
            fields.check_keys(spec, CATEGORY_KEYS)
            name = fields.text(spec, "name", required=True, label=f"categories.{key}.name")
            names = _names(fields, spec, f"categories.{key}.i18n")
            if name is not None:
                categories.append(Category(key, name.strip(), names, line))
        else:
            message = f"category '{key}' must be a name, or {{name: ..., i18n: {{fr: ...}}}}"
            fields.problem(specs.value_line(key), message)
    return tuple(categories)


def _names(fields: Fields, spec: LocatedDict, where: str) -> tuple[tuple[str, str], ...]:
    specs = _mapping(fields, spec, "i18n", "must be a mapping of locale to name", label=where)
    names = []
    for locale, name in _locales(fields, specs, where):
        if is_text(name):
            names.append((locale.lower(), name.strip()))
        else:
            fields.problem(specs.value_line(locale), f"{where}.{locale} must be a non-empty string")
    return tuple(names)


def _mapping(
    fields: Fields, mapping: LocatedDict, key: str, requirement: str, label: str | None = None
) -> Any:
    return fields.field(mapping, key, lambda v: isinstance(v, dict), requirement, label=label)


def _locales(fields: Fields, specs: LocatedDict | None, where: str) -> list[tuple[str, Any]]:
    """The (locale, value) pairs of a mapping keyed by locale; a malformed locale, or one
    given twice (locales compare case-insensitively), is a problem at its line."""
    seen: dict[str, int] = {}
    pairs: list[tuple[str, Any]] = []
    if specs is None:
        return pairs
    for locale, value in specs.items():
        line = specs.key_line(locale)
        if LOCALE_PATTERN.fullmatch(locale) is None:
            fields.problem(line, f"{where}: '{locale}' {LOCALE_REQUIREMENT}")
        elif locale.lower() in seen:
            message = f"locale '{locale}' is given twice (first at line {seen[locale.lower()]})"
            fields.problem(line, f"{where}: {message}")
        else:
            seen[locale.lower()] = line
            pairs.append((locale, value))
    return pairs


def unknown_categories(rules: Sequence[Rule], config: Config) -> list[Problem]:
    """Rules whose `category` plaudit.yaml's `categories:` does not list (any category goes
    when it lists none)."""
    known: Mapping[str, Category] = {c.key: c for c in config.categories}
    if not known:
        return []
    return [
        Problem(rule.file or rule.path.as_posix(), rule.category_line,
                f"category '{rule.category}' is not one of plaudit.yaml's categories "
                f"({', '.join(known)})")
        for rule in rules
        if rule.category is not None and rule.category not in known
    ]
