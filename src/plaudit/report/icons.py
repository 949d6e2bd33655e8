"""The report's icons: a level's own `icon:` where the report can show it, else a default
drawn here, so that no page shows a broken image.

A level's `icon:` is a URL (`https://...`, `data:...`: linked as it is, so a page needs the
network for it) or a path relative to the project folder (plaudit.yaml's; a leading `/` is
that folder too): the file is copied into the report's `icons/` and linked there. A path with
no file behind it gets the default icon, and the report says which (`Icons.missing`).

The defaults tell a level's place by shape and colour, the first level a bronze circle, the
second a silver shield, then gold hexagon, platinum star, diamond, ruby octagon, round again;
the level's number is drawn in it.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

DEFAULT_DIR = "icons"  # under the report folder: level-1.svg, ...
COPIED_DIR = "icons/files"  # the project's icon files, under their own relative paths
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|data:)", re.IGNORECASE)

# (fill, darker rim, inner highlight, number colour) per level position, cycling
_COLOURS = [
    ("#b87333", "#6e4420", "#d99a5f", "#ffffff"),  # bronze
    ("#b4bcc4", "#5f6870", "#dde2e6", "#1f2328"),  # silver
    ("#e0b100", "#7a5c00", "#f6d44a", "#1f2328"),  # gold
    ("#8fb3c9", "#3d5f73", "#c5dbe8", "#1f2328"),  # platinum
    ("#5ec8e5", "#1d6f86", "#aee6f4", "#1f2328"),  # diamond
    ("#c0392b", "#6d1f17", "#e3796e", "#ffffff"),  # ruby
]
# The shapes on a 64 x 64 canvas, centred on (32, 32).
_SHAPES = [
    '<circle cx="32" cy="32" r="{r}"/>',
    '<path d="M32 {t} L{r2} {a} L{r2} {b} Q{r2} {c} 32 {d} Q{l2} {c} {l2} {b} L{l2} {a} Z"/>',
    '<polygon points="{hexagon}"/>',
    '<polygon points="{star}"/>',
    '<polygon points="32,{t} {r2},32 32,{d} {l2},32"/>',
    '<polygon points="{octagon}"/>',
]


def is_url(icon: str) -> bool:
    return _URL.match(icon) is not None


def default_icon_name(position: int) -> str:
    """Where a level's default icon is written, relative to the report folder."""
    return f"{DEFAULT_DIR}/level-{position}.svg"


def default_icon(position: int) -> str:
    """The SVG of the default icon of the level at `position` (1 = first)."""
    fill, rim, light, ink = _COLOURS[(position - 1) % len(_COLOURS)]
    shape = _SHAPES[(position - 1) % len(_SHAPES)]
    outer, inner = _shape(shape, 30), _shape(shape, 23)
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
        f'<g fill="{fill}" stroke="{rim}" stroke-width="3" stroke-linejoin="round">{outer}</g>'
        f'<g fill="{light}" opacity="0.55">{inner}</g>'
        f'<text x="32" y="39" text-anchor="middle" font-family="sans-serif" font-size="20" '
        f'font-weight="bold" fill="{ink}">{position}</text></svg>\n'
    )


def _shape(template: str, radius: int) -> str:
    def ring(points: int, turn: float, radii: tuple[float, ...]) -> str:
        coords = []
        for i in range(points):
            angle = math.pi * 2 * i / points + turn
            r = radii[i % len(radii)]
            coords.append(f"{32 + r * math.sin(angle):.1f},{32 - r * math.cos(angle):.1f}")
        return " ".join(coords)

    return template.format(
        r=radius, t=32 - radius, d=32 + radius, r2=32 + radius * 0.85, l2=32 - radius * 0.85,
        a=32 - radius * 0.7, b=32 + radius * 0.05, c=32 + radius * 0.6,
        hexagon=ring(6, 0, (radius,)), octagon=ring(8, 0.3927, (radius,)),
        star=ring(10, 0, (radius, radius * 0.5)),
    )


@dataclass
class Icons:
    """Where each icon of the report comes from: `src(icon, position)` is what a page links
    (relative to the report folder); `write(folder)` puts the files there."""

    project_dir: Path
    defaults: set[int] = field(default_factory=set)  # level positions drawn
    copies: dict[str, Path] = field(default_factory=dict)  # report path -> project file
    missing: list[str] = field(default_factory=list)  # icon paths with no file

    def src(self, icon: str | None, position: int) -> str:
        if icon and is_url(icon):
            return icon
        if icon:
            relative = PurePosixPath(icon.lstrip("/"))
            source = (self.project_dir / relative).resolve()
            # a file inside the project only: `../../etc/x` is not the report's to copy
            inside = source.is_relative_to(self.project_dir.resolve())
            if inside and source.is_file() and ".." not in relative.parts:
                target = f"{COPIED_DIR}/{relative}"
                self.copies[target] = source
                return target
            if icon not in self.missing:
                self.missing.append(icon)
        self.defaults.add(position)
        return default_icon_name(position)

    def write(self, folder: Path) -> None:
        for position in sorted(self.defaults):
            path = folder / default_icon_name(position)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(default_icon(position), encoding="utf-8")
        for target, source in self.copies.items():
            path = folder / target
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, path)
