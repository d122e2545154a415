"""The limits of a hosted studio, in one place: what a visitor may send and how much work one request may cost.

Every limit has a default, a command-line flag of `python app.py` and a line in the README's table
(`limits_table()` writes it, so the docs cannot drift). Local mode applies none of them except those a local
user also benefits from (none today); public mode (`--public`, on by itself on Hugging Face Spaces) applies all.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from sdpose_core.errors import ConfigError


@dataclass(frozen=True)
class Limits:
    """Caps of the public mode (see the module docstring). Sizes in MB are 10^6 bytes."""

    upload_mb: float = 25.0  # any one uploaded file (image, video, weights, annotation zip)
    image_megapixels: float = 40.0  # width x height of an image, read from its header before decoding
    video_seconds: float = 120.0  # length of an uploaded video (frames / fps)
    zip_unpacked_mb: float = 400.0  # all members of an annotation zip together, unpacked
    zip_members: int = 5000  # files in an annotation zip
    people_per_image: int = 20  # people the detector keeps per image
    cycles: int = 8  # cycles a request may run
    set_images: int = 500  # images of a labelled set one analysis predicts (a seeded sample of larger sets)
    queue_size: int = 16  # requests waiting at once; more get "the queue is full, try again"
    session_hours: float = 6.0  # a visitor's uploads, reviews and exports are deleted this long after last use
    hub_mb: float = 200.0  # total size of an allowed hf:// weights repo

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"limit {f.name} must be a number > 0, got {value!r}")

    @property
    def upload_bytes(self) -> int:
        return int(self.upload_mb * 1e6)

    @property
    def image_pixels(self) -> int:
        return int(self.image_megapixels * 1e6)


# field -> (flag of python app.py, what it caps); the README table and the argument parser read this
LIMIT_FLAGS: dict[str, tuple[str, str]] = {
    "upload_mb": ("--max-upload-mb", "size of one uploaded file (image, video, weights, annotation zip), MB"),
    "image_megapixels": ("--max-image-mp", "image width x height, megapixels (checked in the header, before decoding)"),
    "video_seconds": ("--max-video-s", "length of an uploaded video, seconds"),
    "zip_unpacked_mb": ("--max-zip-mb", "an annotation zip's members together, unpacked, MB"),
    "zip_members": ("--max-zip-files", "files in an annotation zip"),
    "people_per_image": ("--max-people", "people found per image"),
    "cycles": ("--max-cycles", "cycles one request may run"),
    "set_images": ("--max-set-images", "images of a labelled set one analysis predicts (a seeded sample beyond)"),
    "queue_size": ("--queue-size", "requests waiting at once (then: busy, try again)"),
    "session_hours": ("--session-hours", "hours a visitor's files are kept after their last use"),
    "hub_mb": ("--hub-max-mb", "size of an allowed hf:// weights repo, MB"),
}


def limits_table(limits: Limits | None = None) -> str:
    """The README's Markdown table: limit, default, flag."""
    limits = limits or Limits()
    rows = ["| limit | default | flag |", "|---|---|---|"]
    for name, (flag, what) in LIMIT_FLAGS.items():
        value = getattr(limits, name)
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        rows.append(f"| {what} | {shown} | `{flag}` |")
    return "\n".join(rows)
