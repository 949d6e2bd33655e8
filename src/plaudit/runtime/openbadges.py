"""Open Badges 3.0: one `OpenBadgeCredential` per grant (`plaudit export --format ob3`), and
its validation against the official JSON-LD contexts, offline.

The contexts ship in plaudit (runtime/jsonld/): `credentials-v2.jsonld` is the W3C Verifiable
Credentials 2.0 context (https://www.w3.org/ns/credentials/v2, as in the npm package
@digitalcredentials/credentials-v2-context 1.0.0), `context-3.0.3.json` the Open Badges 3.0
context (https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json, from
1EdTech/openbadges-specification). Validation loads them from there and nothing from the
network. Credentials are not signed (docs/operations.md, "Exports").
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from plaudit.errors import InvalidCredential
from plaudit.model.issuer import IRI_PATTERN, OpenBadges
from plaudit.runtime.export import Badge, ExportedGrant, Level

VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
OB_CONTEXT = "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
CONTEXT_DIR = Path(__file__).parent / "jsonld"
CONTEXT_FILES = {VC_CONTEXT: "credentials-v2.jsonld", OB_CONTEXT: "context-3.0.3.json"}
# The namespace of plaudit's name-based (version 5) UUIDs: fixed for good, since a changed
# namespace would change every credential's and achievement's id.
NAMESPACE = uuid.UUID("3b3282b5-ac65-414a-8c42-5ac6614c2037")
# xsd:dateTime with a zone, as validFrom needs it
_DATE_TIME = re.compile(r"-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def name_uuid(*parts: Any) -> str:
    """urn:uuid: of a version 5 UUID of the JSON array of `parts` in plaudit's namespace:
    the same parts, the same id, in every export."""
    text = json.dumps([str(part) for part in parts], ensure_ascii=False)
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, text)}"


def achievement_name(badge: Badge, level: Level) -> str:
    """The badge's name, and the level's unless it says the same ("Reader: Bookworm")."""
    return badge.name if level.name == badge.name else f"{badge.name}: {level.name}"


def narrative(badge: Badge, level: Level) -> str:
    """How the level is earned, in words: the badge's description, then the level's
    threshold. (Where a level's own description or hint goes once rules have them.)"""
    description = badge.description.strip()
    if level.threshold is None:  # an award: the description says it all, if there is one
        return description or f"{level.name}: awarded."
    reached = f"{level.name}: {badge.kind} of at least {level.threshold}."
    return f"{description} {reached}" if description else reached


def achievement(badge: Badge, level: Level, issuer: OpenBadges) -> dict[str, Any]:
    """The `Achievement` a grant of this level stands for: the same for every holder."""
    name = achievement_name(badge, level)
    body: dict[str, Any] = {
        "id": issuer.achievement_id(badge.slug, level.key)
        or name_uuid(issuer.issuer_id, badge.slug, level.key),
        "type": ["Achievement"],
        "achievementType": "Badge",
        "name": name,
        # required and non-empty in Open Badges 3.0
        "description": badge.description.strip() or f"{name}, a badge of {issuer.issuer_name}.",
        "criteria": {"narrative": narrative(badge, level)},
    }
    image = issuer.image(level.icon)
    if image is not None:
        body["image"] = {"id": image, "type": "Image", "caption": name}
    if badge.tags:
        body["tag"] = list(badge.tags)
    return body


class Credentials:
    """The ob3 format (an export.Encoder): one credential per line, in JSON.

    A grant dated 'infinity' or '-infinity' has no validFrom a verifier could read: it is
    left out, and counted in `infinite`. With `validate`, each line is checked as written
    (`problems`), and the first invalid one raises InvalidCredential.
    """

    header = ""

    def __init__(self, badges: Sequence[Badge], issuer: OpenBadges, validate: bool = False):
        self.issuer = issuer
        self.validate = validate
        profile: dict[str, Any] = {"id": issuer.issuer_id, "type": ["Profile"],
                                   "name": issuer.issuer_name}
        if issuer.issuer_url is not None:
            profile["url"] = issuer.issuer_url
        # A credential is the same JSON for every grant but for its id, validFrom, name and
        # subject: the rest is serialized once, here (json.dumps of the whole credential
        # took most of an export's time). The pieces join into what json.dumps would write.
        self.head = f'{{"@context": {_json([VC_CONTEXT, OB_CONTEXT])}, "id": '
        self.issued = (', "type": ["VerifiableCredential", "OpenBadgeCredential"], '
                       f'"issuer": {_json(profile)}, "validFrom": ')
        self.achievements = {
            (badge.slug, level.key): (achievement_name(badge, level),
                                      _json(achievement(badge, level, issuer)))
            for badge in badges for level in badge.levels}
        self.infinite = 0

    def line(self, grant: ExportedGrant) -> str | None:
        if not grant["achieved_at"][:1].isdigit():
            self.infinite += 1
            return None
        name, badge_level = self.achievements[(grant["badge"], grant["level"])]
        scope = f" ({grant['scope']})" if grant["scope"] else ""
        identifier = name_uuid(self.issuer.issuer_id, grant["user_id"], grant["badge"],
                               grant["level"], grant["scope"])
        text = (
            f'{self.head}{_json(identifier)}{self.issued}'
            f'{_json(grant["achieved_at"].replace("+00:00", "Z"))}, "name": {_json(name + scope)}, '
            f'"credentialSubject": {{"id": {_json(self.issuer.subject_id(grant["user_id"]))}, '
            f'"type": ["AchievementSubject"], "achievement": {badge_level}}}}}')
        found = problems(json.loads(text)) if self.validate else []
        if found:
            raise InvalidCredential(
                f"the credential of user {grant['user_id']}'s {grant['badge']}/{grant['level']}"
                f" ({identifier}) is not valid Open Badges 3.0: {'; '.join(found)}")
        return text + "\n"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# -- validation ---------------------------------------------------------------------------


@cache
def contexts() -> Mapping[str, Any]:
    """The two contexts, by URL, from the copies plaudit ships."""
    return {url: json.loads((CONTEXT_DIR / file).read_text(encoding="utf-8"))
            for url, file in CONTEXT_FILES.items()}


def document_loader(url: str, options: Any = None) -> dict[str, Any]:
    """pyld's document loader, offline: the packaged contexts, and nothing else."""
    from pyld.jsonld import JsonLdError

    if url not in CONTEXT_FILES:
        raise JsonLdError(f"plaudit loads no document from the network: {url}",
                          "jsonld.LoadDocumentError", code="loading document failed")
    return {"contentType": "application/ld+json", "contextUrl": None, "documentUrl": url,
            "document": contexts()[url]}


def expand(document: Mapping[str, Any], dropped: list[str] | None = None) -> list[Any]:
    """JSON-LD expansion against the packaged contexts; the names of the properties no
    context defines (which expansion drops) are added to `dropped`."""
    from pyld import jsonld  # a quarter of a second to import: only when validating

    found: list[str] = dropped if dropped is not None else []
    return list(jsonld.expand(dict(document), {"documentLoader": document_loader},
                              on_property_dropped=lambda name: found.append(str(name))))


def problems(credential: Mapping[str, Any]) -> list[str]:
    """What makes `credential` no valid OpenBadgeCredential: a missing or malformed
    required field, or a property that JSON-LD expansion drops (no context defines it)."""
    from pyld.jsonld import JsonLdError

    found = _required(credential)
    dropped: list[str] = []
    try:
        expand(credential, dropped)
    except JsonLdError as exc:
        found.append(f"JSON-LD expansion fails: {exc}")
    found += [f"property '{name}' is not defined by the contexts (JSON-LD expansion drops it)"
              for name in sorted(set(dropped))]
    return found


def _required(credential: Mapping[str, Any]) -> list[str]:
    """The fields Open Badges 3.0 requires of a credential and its achievement."""
    found: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            found.append(what)

    context = credential.get("@context")
    need(isinstance(context, list) and context[:1] == [VC_CONTEXT] and OB_CONTEXT in context,
         f"@context must be [{VC_CONTEXT}, {OB_CONTEXT}]")
    need(_iri(credential.get("id")), "id must be an absolute IRI")
    need(_types(credential) >= {"VerifiableCredential", "OpenBadgeCredential"},
         "type must hold VerifiableCredential and OpenBadgeCredential")
    issuer = _object(credential.get("issuer"))
    need(_iri(issuer.get("id")) and "Profile" in _types(issuer),
         "issuer must be a Profile with an absolute IRI as id")
    need(isinstance(credential.get("validFrom"), str)
         and _DATE_TIME.fullmatch(credential["validFrom"]) is not None,
         "validFrom must be a date and time with a zone (xsd:dateTime)")
    need(_text(credential.get("name")), "name must be a non-empty string")
    subject = _object(credential.get("credentialSubject"))
    need("AchievementSubject" in _types(subject),
         "credentialSubject.type must hold AchievementSubject")
    need("id" not in subject or _iri(subject["id"]),
         "credentialSubject.id must be an absolute IRI")
    badge = _object(subject.get("achievement"))
    need(_iri(badge.get("id")) and "Achievement" in _types(badge),
         "credentialSubject.achievement must be an Achievement with an absolute IRI as id")
    for key in ("name", "description"):
        need(_text(badge.get(key)), f"credentialSubject.achievement.{key} must be a "
                                    "non-empty string")
    criteria = _object(badge.get("criteria"))
    need(_iri(criteria.get("id")) or _text(criteria.get("narrative")),
         "credentialSubject.achievement.criteria must have an id or a narrative")
    return found


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _types(node: Mapping[str, Any]) -> set[str]:
    value = node.get("type")
    return {value} if isinstance(value, str) else set(value) if isinstance(value, list) else set()


def _iri(value: Any) -> bool:
    return isinstance(value, str) and IRI_PATTERN.fullmatch(value) is not None


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""
