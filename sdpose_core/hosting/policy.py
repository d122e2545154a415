"""What a public studio accepts from a visitor: the one object every tab asks (`ctx.policy`; None = local mode).

    policy = PublicPolicy.create(state_dir, sample_roots=[...], hub_allow=["org/repo"], limits=Limits())
    ann = policy.check_sample_path(text, session_id)     # inside the operator's sample roots or this session
    spec = policy.check_weights(text, session_id)        # shipped / this session's uploads / allowed hf:// repos
    folder = policy.session_folder(session_id)           # uploads, reviews, exports of this visitor

Local mode (no policy) accepts every path, as a local user on their own machine expects.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sdpose_core.errors import AccessError, LimitError
from sdpose_core.hosting.limits import LIMIT_FLAGS, Limits
from sdpose_core.hosting.paths import resolve_inside
from sdpose_core.hosting.sessions import SessionDirs
from sdpose_core.hub import is_hub_address, parse_hub_address
from sdpose_core.paths import PROJECT_ROOT

# Hugging Face Spaces sets SPACE_ID ("owner/space") in every Space's environment: its presence turns the public
# mode on by itself
SPACES_ENV = "SPACE_ID"
SHIPPED_WEIGHTS = PROJECT_ROOT / "assets"


def running_on_spaces() -> bool:
    return bool(os.environ.get(SPACES_ENV, "").strip())


def hub_repo_size(repo_id: str, revision: str | None = None) -> int:
    """Total bytes of a model repo's files, from the Hub's metadata (no download)."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    return int(sum(sibling.size or 0 for sibling in info.siblings or []))


@dataclass
class PublicPolicy:
    """The public mode's rules (see the module docstring)."""

    limits: Limits
    sample_roots: list[Path]
    hub_allow: list[str]
    sessions: SessionDirs
    _hub_sizes: dict[tuple[str, str | None], int] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, state_dir: str | os.PathLike, sample_roots: Iterable[str | os.PathLike] = (),
               hub_allow: Iterable[str] = (), limits: Limits | None = None) -> PublicPolicy:
        limits = limits or Limits()
        roots = []
        for root in sample_roots:
            path = Path(root).expanduser().resolve()
            roots.append(path.parent if path.is_file() else path)  # an annotation JSON: its folder (the images)
        return cls(limits, roots, [r.strip().strip("/") for r in hub_allow if r.strip()],
                   SessionDirs(state_dir, limits.session_hours))

    # ------------------------------------------------------------------------------------- sessions
    def session_folder(self, session_id: str | None) -> Path:
        return self.sessions.folder(session_id)

    def uploads_folder(self, session_id: str | None) -> Path:
        folder = self.session_folder(session_id) / "uploads"
        folder.mkdir(exist_ok=True)
        return folder

    def review_folder(self, session_id: str | None) -> Path:
        folder = self.session_folder(session_id) / "reviews"
        folder.mkdir(exist_ok=True)
        return folder

    # --------------------------------------------------------------------------------------- uploads
    def take_upload(self, path: str | os.PathLike, session_id: str | None, kind: str) -> Path:
        """Check a visitor's upload (`kind`: image, video, weights, zip) against the limits; weights are copied
        into this session's uploads and a zip is unpacked there (checked first). Returns the path to use."""
        from sdpose_core.hosting.uploads import (
            check_image_file,
            check_upload_size,
            check_video_file,
            extract_annotation_zip,
        )

        source = Path(path)
        if kind == "image":
            check_image_file(source, self.limits)
            return source
        if kind == "video":
            check_video_file(source, self.limits)
            return source
        uploads = self.uploads_folder(session_id)
        digest = hashlib.sha256(f"{source.name}:{source.stat().st_size}:{time.time_ns()}".encode()).hexdigest()[:12]
        if kind == "weights":
            check_upload_size(source, self.limits)
            target = uploads / digest / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            return target
        if kind == "zip":
            return extract_annotation_zip(source, uploads / f"set-{digest}", self.limits)
        raise ValueError(f"unknown upload kind {kind!r}")

    # ---------------------------------------------------------------------------------- sample sets
    def sample_allowed_words(self) -> str:
        return ("choose one of the listed sample sets, or upload a zip of a COCO / CrowdPose annotation JSON with "
                "its images")

    def check_sample_path(self, text: str | os.PathLike, session_id: str | None) -> Path:
        """A sample folder or annotation file inside the operator's roots or this session's uploads."""
        if is_hub_address(str(text)):
            raise AccessError(f"public demo: hf:// datasets are not fetched here; {self.sample_allowed_words()}")
        roots = [*self.sample_roots]
        if session_id:
            roots.append(self.uploads_folder(session_id))
        return resolve_inside(text, roots, "sample path", self.sample_allowed_words())

    def check_set_files(self, files: Iterable[str | os.PathLike], session_id: str | None) -> None:
        """Every image a set names must lie inside the allowed roots too (a visitor's JSON may name ../../x or
        /etc/x). Checked as written: a visitor's zip holds no links (refused when unpacked), and links in the
        operator's folders are the operator's choice."""
        roots = [*self.sample_roots, *([self.uploads_folder(session_id)] if session_id else [])]
        for file in files:
            resolve_inside(file, roots, "image named by the annotation file",
                           "image file names must stay inside the set's folder", follow_links=False)

    # --------------------------------------------------------------------------------------- weights
    def weights_allowed_words(self) -> str:
        if self.hub_allow:
            return ("use the shipped weights (leave the field empty), upload a weights file, or one of the hf:// "
                    f"repos {', '.join(self.hub_allow)}")
        return ("use the shipped weights (leave the field empty) or upload a weights file; hf:// repos are off here "
                "(the operator allows them with --hub-allow)")

    def check_weights(self, text: str | os.PathLike | None, session_id: str | None) -> str:
        """The weights spec when public mode allows it: "" (the shipped default), a folder inside assets/,
        a file in this session's uploads, or an hf:// repo on the allow-list within the size cap."""
        spec = "" if text is None else str(text).strip()
        if not spec:
            return ""
        if is_hub_address(spec):
            address = parse_hub_address(spec, default_repo_type="model")
            if address.repo_id not in self.hub_allow:
                raise AccessError(f"public demo: hf://{address.repo_id} is not on this server's list; "
                                  f"{self.weights_allowed_words()}")
            self.check_hub_size(address.repo_id, address.revision)
            return spec
        roots = [SHIPPED_WEIGHTS, *([self.uploads_folder(session_id)] if session_id else [])]
        return str(resolve_inside(spec, roots, "weights path", self.weights_allowed_words()))

    def check_hub_size(self, repo_id: str, revision: str | None = None, size: int | None = None) -> int:
        """LimitError when the repo is larger than `hub_mb`; `size` skips the Hub query (tests, callers that
        already know it)."""
        if size is None:  # asked once per repo and revision: predictor() checks weights on every request
            key = (repo_id, revision)
            if key not in self._hub_sizes:
                self._hub_sizes[key] = hub_repo_size(repo_id, revision)
            size = self._hub_sizes[key]
        size = int(size)
        if size > self.limits.hub_mb * 1e6:
            raise LimitError(f"hf://{repo_id} holds {size / 1e6:.0f} MB; the limit here is {self.limits.hub_mb:g} MB "
                             f"(the operator sets it with {LIMIT_FLAGS['hub_mb'][0]})")
        return size
