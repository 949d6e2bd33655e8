"""plaudit.yaml's `openbadges:` section: who issues the Open Badges 3.0 credentials that
`plaudit export --format ob3` writes, and how a user, a badge's level and an icon become IRIs.

    openbadges:
      issuer: {id: https://example.org, name: Example, url: https://example.org}
      subject: https://example.org/users/{user_id}
      achievement: https://example.org/badges/{badge}/{level}   # optional
      image_base: https://example.org/icons/                     # optional
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from plaudit.model.yamlsource import Fields, LocatedDict

OPENBADGES_KEYS = ("issuer", "subject", "achievement", "image_base")
ISSUER_KEYS = ("id", "name", "url")
# An absolute IRI: a scheme, then no white space (https://..., did:web:..., urn:...). JSON-LD
# keeps a relative IRI as it is, and a verifier cannot resolve it: refused here.
IRI_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]+")
_IRI = "must be an absolute IRI such as https://example.org/... or did:web:example.org"


@dataclass(frozen=True)
class OpenBadges:
    """The issuer profile and the IRI templates of the exported credentials."""

    issuer_id: str
    issuer_name: str
    issuer_url: str | None
    subject: str  # holds {user_id}
    achievement: str | None = None  # holds {badge} and {level}; None: a urn:uuid per level
    image_base: str | None = None  # put before icons that are not absolute IRIs

    def subject_id(self, user_id: Any) -> str:
        """The credential subject's id: the template with the user id, percent-encoded."""
        return self.subject.replace("{user_id}", quote(str(user_id), safe=""))

    def achievement_id(self, badge: str, level: str) -> str | None:
        if self.achievement is None:
            return None
        return self.achievement.replace("{badge}", badge).replace("{level}", level)

    def image(self, icon: str | None) -> str | None:
        """The IRI of a level's icon: an absolute IRI as it is, else after image_base; None
        without an icon, or for a relative icon without image_base (no IRI to give)."""
        if not icon:
            return None
        if IRI_PATTERN.fullmatch(icon):
            return icon
        if self.image_base is None:
            return None
        return self.image_base + quote(icon, safe="/")


def is_iri(value: Any) -> bool:
    return isinstance(value, str) and IRI_PATTERN.fullmatch(_filled(value)) is not None


def _filled(template: str) -> str:
    """A template with sample values, to check that what it makes is an IRI."""
    for name in ("user_id", "badge", "level"):
        template = template.replace("{" + name + "}", "x")
    return template


def _template(names: tuple[str, ...], example: str) -> tuple[Any, str]:
    def accept(value: Any) -> bool:
        return is_iri(value) and all("{" + name + "}" in value for name in names)

    holds = " and ".join("{" + name + "}" for name in names)
    return accept, f"must be an absolute IRI holding {holds}, like {example}"


def read_openbadges(fields: Fields, document: LocatedDict) -> OpenBadges | None:
    """The `openbadges:` section, or None when plaudit.yaml has none (then `export --format
    ob3` says what to add). Problems go to `fields`, at their lines."""
    section = fields.field(
        document, "openbadges", lambda v: isinstance(v, dict), "must be a mapping")
    if section is None:
        return None
    fields.check_keys(section, OPENBADGES_KEYS)
    issuer = fields.field(section, "issuer", lambda v: isinstance(v, dict),
                          "must be a mapping like {id: https://example.org, name: Example}",
                          required=True, label="openbadges.issuer")
    issuer_id = name = url = None
    if issuer is not None:
        fields.check_keys(issuer, ISSUER_KEYS)
        issuer_id = fields.field(issuer, "id", is_iri, _IRI, required=True,
                                 label="openbadges.issuer.id")
        name = fields.text(issuer, "name", required=True, label="openbadges.issuer.name")
        url = fields.field(issuer, "url", is_iri, _IRI, label="openbadges.issuer.url")
    accept, requirement = _template(("user_id",), "https://example.org/users/{user_id}")
    subject = fields.field(section, "subject", accept, requirement, required=True,
                           label="openbadges.subject")
    accept, requirement = _template(("badge", "level"),
                                    "https://example.org/badges/{badge}/{level}")
    achievement = fields.field(section, "achievement", accept, requirement,
                               label="openbadges.achievement")
    image_base = fields.field(section, "image_base", is_iri, _IRI,
                              label="openbadges.image_base")
    if issuer_id is None or name is None or subject is None:
        return None  # the problems say why
    return OpenBadges(issuer_id, name, url, subject, achievement, image_base)
