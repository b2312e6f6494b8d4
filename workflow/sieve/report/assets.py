"""The page and its files: the escaped JSON blob in the HTML template, and web-sized JPEG thumbnails."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from PIL import Image

from ..images import open_rgb
from ..io import _jsonable, atomic_path
from .values import ReportError

JPEG_QUALITY = 75
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def embed_json(data: Any) -> str:
    """Strict JSON that is safe inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` are written as ``\\u003c`` etc. (still the same JSON string values), so a
    concept such as ``</script><script>alert(1)</script>`` cannot close the element or open a comment.
    """
    text = json.dumps(_jsonable(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: _SCRIPT_ESCAPES[m.group(0)], text)


def render_html(data: dict[str, Any], title: str) -> str:
    """The page: the packaged template with the (escaped) title and data blob filled in, in one pass, so that a
    title holding the text ``{{DATA}}`` stays text (the data blob is never substituted into the title)."""
    template = resources.files(__package__).joinpath("template.html").read_text(encoding="utf-8")
    fill = {"TITLE": html.escape(title, quote=True), "DATA": embed_json(data)}
    return re.sub(r"\{\{(TITLE|DATA)\}\}", lambda m: fill[m.group(1)], template)


def make_thumbnail(
    src: str | Path,
    dst: str | Path,
    max_size: int,
    quality: int = JPEG_QUALITY,
    max_height: int | None = None,
) -> tuple[int, int]:
    """Re-encode ``src`` as a JPEG at most ``max_size`` wide and ``max_height`` (default ``max_size``) high;
    returns (width, height)."""
    try:
        img = open_rgb(src, background=(255, 255, 255))
        img.thumbnail((max_size, max_height or max_size), Image.Resampling.LANCZOS)
        with atomic_path(dst, suffix=".jpg") as tmp:
            img.save(tmp, "JPEG", quality=quality, optimize=True)
        return img.size
    except OSError as exc:
        raise ReportError(f"cannot read image {src}: {exc}") from exc


class Assets:
    """Writes thumbnails under ``assets/`` once each and returns the page-relative URL."""

    def __init__(self, report_dir: Path, assets_dir: Path) -> None:
        self.report_dir = report_dir
        self.assets_dir = assets_dir
        self.done: dict[str, str] = {}
        self.bytes = 0

    def _url(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.report_dir)).as_posix()

    def link(self, path: Path) -> str:
        """A link from the page to a result file beside it (``../{model}/{probe}/...``): relative, so that it works
        when the results folder is opened locally or copied whole, each path segment URL-escaped."""
        return "/".join(quote(part) for part in Path(os.path.relpath(path, self.report_dir)).parts)

    def thumbnail(self, src: Path, rel: str, max_size: int, max_height: int | None = None) -> str:
        if rel not in self.done:
            dst = self.assets_dir / rel
            make_thumbnail(src, dst, max_size, max_height=max_height)
            self.bytes += dst.stat().st_size
            self.done[rel] = self._url(dst)
        return self.done[rel]

    def copy(self, src: Path, rel: str) -> str:
        if rel not in self.done:
            dst = self.assets_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
            self.bytes += dst.stat().st_size
            self.done[rel] = self._url(dst)
        return self.done[rel]
