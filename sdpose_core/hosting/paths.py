"""Paths a hosted studio accepts: checked once, here, for every tab and endpoint.

`resolve_inside(text, roots)` is the one gate: it refuses `..` parts outright (a visitor has no reason to send
one), resolves symlinks, and accepts the result only inside one of the allowed roots (themselves resolved), so
neither `../../etc/passwd` nor a symlink planted inside an allowed folder reaches the rest of the server.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from sdpose_core.errors import AccessError


def _is_inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve_inside(text: str | os.PathLike, roots: Iterable[str | os.PathLike], what: str, allowed: str,
                   follow_links: bool = True) -> Path:
    """The resolved path of `text` when it lies inside one of `roots`; AccessError otherwise, naming `what` was
    refused and `allowed` (in words: what the visitor may use instead). `follow_links=False` checks the path as
    written (made absolute, not resolved): for files an allowed set names, where links are the operator's own."""
    raw = str(text).strip()
    if not raw:
        raise AccessError(f"public demo: no {what} given; {allowed}")
    if "\x00" in raw or ".." in Path(raw).parts or raw.startswith("~"):
        raise AccessError(f"public demo: {what} {raw!r} is refused ('..', '~' and NUL are not accepted); {allowed}")
    resolved_roots = [Path(root).expanduser().resolve() for root in roots]
    if not follow_links:
        resolved_roots += [Path(os.path.abspath(Path(root).expanduser())) for root in roots]
    try:
        path = Path(raw).resolve() if follow_links else Path(os.path.abspath(raw))
    except (OSError, RuntimeError):  # a symlink loop
        raise AccessError(f"public demo: {what} {raw!r} cannot be resolved; {allowed}") from None
    if not any(_is_inside(path, root) for root in resolved_roots):
        raise AccessError(f"public demo: {what} {raw!r} is outside what this server offers; {allowed}")
    return path
