"""The test's own Open Badges 3.0 checks, written apart from plaudit's (runtime/openbadges.py):
JSON-LD expansion with pyld against the contexts plaudit ships, loaded offline, and a
property-by-property comparison of a credential with what survives expansion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pyld import jsonld

import plaudit

CONTEXTS = Path(plaudit.__file__).parent / "runtime" / "jsonld"
FILES = {
    "https://www.w3.org/ns/credentials/v2": "credentials-v2.jsonld",
    "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json": "context-3.0.3.json",
}
# the specification's minimal OpenBadgeCredential, a copy of the one in shared/ (README.md)
EXAMPLE = json.loads(
    (Path(__file__).parent / "openbadges" / "example-basic-credential.json").read_text())
# what Open Badges 3.0 requires of an OpenBadgeCredential and its achievement
REQUIRED = [
    "@context", "id", "type", "issuer", "issuer.id", "issuer.type", "validFrom", "name",
    "credentialSubject", "credentialSubject.type", "credentialSubject.achievement",
    "credentialSubject.achievement.id", "credentialSubject.achievement.type",
    "credentialSubject.achievement.name", "credentialSubject.achievement.description",
    "credentialSubject.achievement.criteria",
]


def _loader(url: str, options: Any = None) -> dict[str, Any]:
    if url not in FILES:  # offline: any other document is an error, not a download
        raise AssertionError(f"the credential needs a context the test does not have: {url}")
    document = json.loads((CONTEXTS / FILES[url]).read_text(encoding="utf-8"))
    return {"contentType": "application/ld+json", "contextUrl": None, "documentUrl": url,
            "document": document}


def expand_offline(document: dict[str, Any]) -> list[Any]:
    return jsonld.expand(json.loads(json.dumps(document)), {"documentLoader": _loader})


def key_paths(node: Any, prefix: str = "") -> set[str]:
    """Every property of a JSON document as a dotted path (list items share their list's)."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= key_paths(item, prefix)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "@context":
                continue
            path = f"{prefix}{key}"
            found.add(path)
            found |= key_paths(value, path + ".")
    return found


def dropped_keys(document: dict[str, Any]) -> set[str]:
    """The properties of `document` that do not survive JSON-LD expansion: expanded, then
    compacted again with the document's own context, every term the contexts define comes
    back under its name; an undefined one is gone."""
    expanded = expand_offline(document)
    compacted = jsonld.compact(expanded, {"@context": document["@context"]},
                               {"documentLoader": _loader})
    return key_paths(document) - key_paths(compacted)


def missing_required(document: dict[str, Any]) -> list[str]:
    """The required properties that `document` lacks (or leaves empty), in REQUIRED's order."""
    missing = []
    for path in REQUIRED:
        node: Any = document
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if node in (None, "", [], {}):
            missing.append(path)
    return missing
