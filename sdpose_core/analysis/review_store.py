"""Annotation review: flags and keypoint fixes for a labelled set, kept in one JSON file next to it.

    path, where = review_path_for(sample_set.ann_path, review_dir=None)   # + a sentence saying where
    store = ReviewStore.open(path, sample_set.ann_path, on_corrupt="backup")
    store.set_flag(ann_id, "gt wrong")                 # saved at once
    store.set_keypoint(ann_id, joint=9, x=312.5, y=208.0)
    corrected = store.corrected_coco(sample_set.data)  # the annotation dict with every fix applied
    store.export_coco(sample_set.data, "fixed.json"); store.export_flags_csv(sample_set, "flags.csv")

Every change is written at once and atomically: the new content goes to a temporary file in the same
folder, is flushed and fsync'ed, then `os.replace`d over the review file (and the folder is fsync'ed),
so a crash at any moment leaves either the old or the new file, never a torn one. A corrupt review
file is never overwritten: `on_corrupt="backup"` renames it aside and starts an empty review.

Where the file goes (`review_path_for`): `--review-dir` when given; else beside the annotation file
when that folder is writable (never inside the shared data folder, nor a folder without write permission
bits); else a per-user folder (`$SDPOSE_REVIEW_DIR`, else `~/.local/state/sdpose-studio/reviews`).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from sdpose_core.errors import DataError
from sdpose_core.paths import data_root

REVIEW_FLAGS: tuple[str, ...] = ("ok", "gt wrong", "prediction wrong", "ambiguous")
REVIEW_FORMAT = "sdpose-review"
REVIEW_VERSION = 1
REVIEW_DIR_ENV = "SDPOSE_REVIEW_DIR"
FLAG_CSV_COLUMNS = ("image_id", "file_name", "ann_id", "flag", "note", "edited_joints", "flagged_at")


def default_review_dir() -> Path:
    env = os.environ.get(REVIEW_DIR_ENV)
    if env:
        return Path(env).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "sdpose-studio" / "reviews"


def _writable(folder: Path) -> bool:
    """True when `folder` is meant to be written and a file can really be created in it.

    The shared data folder (`sdpose_core.paths.data_root()`) never is, and neither is a folder without any
    write permission bit: root could still write there, but the bits say it is read-only data."""
    resolved = folder.expanduser().resolve()
    if resolved == data_root() or data_root() in resolved.parents:
        return False
    try:
        if folder.exists() and not folder.stat().st_mode & 0o222:
            return False
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sdpose-write-test-"):
            return True
    except OSError:
        return False


def review_path_for(ann_path: str | os.PathLike, review_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(review file for this annotation file, a sentence saying where and why); DataError when the
    chosen review folder cannot be written."""
    ann = Path(ann_path).expanduser().resolve()
    digest = hashlib.sha1(str(ann).encode("utf-8")).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{ann.parent.name}-{ann.stem}")
    if review_dir is not None:
        folder = Path(review_dir).expanduser()
        if not _writable(folder):
            raise DataError(f"review folder {folder} is not writable; pass a folder you can write to (--review-dir)")
        return folder / f"{slug}-{digest}.review.json", f"in the review folder {folder} (--review-dir)"
    if _writable(ann.parent):
        return ann.parent / f"{ann.stem}.review.json", f"next to the annotations, in {ann.parent}"
    fallback = default_review_dir()
    if not _writable(fallback):
        raise DataError(f"neither {ann.parent} nor {fallback} is writable; pass --review-dir with a writable folder")
    return fallback / f"{slug}-{digest}.review.json", (
        f"in {fallback}, because the data folder {ann.parent} is read-only (choose another with --review-dir)")


def _file_mode(target: Path) -> int:
    """The target's current permissions, else 0666 minus the process umask (what open() would give)."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text` atomically (temp file in the same folder, fsync, os.replace, fsync dir)."""
    target = Path(path)
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.chmod(temp_name, _file_mode(target))  # mkstemp makes 0600; keep the usual permissions
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    try:
        folder = os.open(target.parent, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _empty_state(ann_path: Path) -> dict[str, Any]:
    return {"format": REVIEW_FORMAT, "version": REVIEW_VERSION, "annotation_file": str(ann_path),
            "flags": {}, "edits": {}}


def _check_state(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != REVIEW_FORMAT:
        raise DataError(f"review file {path} is not an SDPose review file (no \"format\": \"{REVIEW_FORMAT}\")")
    if data.get("version") != REVIEW_VERSION:
        raise DataError(f"review file {path} has version {data.get('version')!r}; this studio reads version "
                        f"{REVIEW_VERSION}")
    for key in ("flags", "edits"):
        if not isinstance(data.get(key), dict):
            raise DataError(f"review file {path}: '{key}' must be an object keyed by annotation id")
    for ann_id, entry in data["flags"].items():
        if not isinstance(entry, dict) or entry.get("flag") not in REVIEW_FLAGS:
            raise DataError(f"review file {path}: flag of annotation {ann_id} is {entry!r}; flags are {REVIEW_FLAGS}")
    for ann_id, joints in data["edits"].items():
        ok = isinstance(joints, dict) and all(
            isinstance(v, list) and len(v) == 3 and all(isinstance(n, (int, float)) for n in v)
            for v in joints.values())
        if not ok:
            raise DataError(f"review file {path}: edits of annotation {ann_id} must map joint index -> [x, y, v]")
    return data


class ReviewStore:
    """Flags and keypoint edits of one annotation file, persisted on every change (module docstring)."""

    def __init__(self, path: Path, ann_path: Path, state: dict[str, Any], notes: list[str] | None = None) -> None:
        self.path = path
        self.ann_path = ann_path
        self._state = state
        self.notes = notes or []

    @classmethod
    def open(cls, path: str | os.PathLike, ann_path: str | os.PathLike, on_corrupt: str = "raise") -> ReviewStore:
        """Load the review at `path` (a new, empty one when the file does not exist yet).

        on_corrupt: "raise" (DataError naming the file) or "backup" (rename the unreadable file to
        `<name>.corrupt-<time>` and start empty; `notes` says so)."""
        if on_corrupt not in ("raise", "backup"):
            raise ValueError(f"on_corrupt must be 'raise' or 'backup', got {on_corrupt!r}")
        target, ann = Path(path).expanduser(), Path(ann_path).expanduser()
        if not target.exists():
            return cls(target, ann, _empty_state(ann))
        try:
            try:
                data = json.loads(target.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise DataError(f"review file {target} is corrupt ({error}); it was not changed") from error
            return cls(target, ann, _check_state(data, target))
        except DataError as error:
            if on_corrupt == "raise":
                raise
            backup = target.with_name(f"{target.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(target, backup)
            return cls(target, ann, _empty_state(ann), [f"{error}. It was moved to {backup} and a new, empty "
                                                        f"review was started in {target}"])

    # ------------------------------------------------------------------------------------------ state
    @property
    def flags(self) -> dict[int, dict[str, Any]]:
        return {int(k): dict(v) for k, v in self._state["flags"].items()}

    @property
    def edits(self) -> dict[int, dict[int, list[float]]]:
        return {int(k): {int(j): list(xyv) for j, xyv in v.items()} for k, v in self._state["edits"].items()}

    def flag_of(self, ann_id: int) -> str | None:
        entry = self._state["flags"].get(str(int(ann_id)))
        return entry["flag"] if entry else None

    def note_of(self, ann_id: int) -> str:
        """The note saved with a person's flag ("" when unflagged or saved without one)."""
        entry = self._state["flags"].get(str(int(ann_id)))
        return str(entry.get("note", "")) if entry else ""

    def _save(self, change: Any) -> None:
        """Apply `change` to the state and write it; on a failed write the state stays as it was."""
        before = copy.deepcopy(self._state)
        change(self._state)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self._state, indent=1, sort_keys=True))
        except OSError as error:
            self._state = before
            raise DataError(f"could not save the review to {self.path} ({error}); nothing was changed. Pick a "
                            "writable folder with --review-dir") from error

    def set_flag(self, ann_id: int, flag: str, note: str = "") -> None:
        if flag not in REVIEW_FLAGS:
            raise DataError(f"unknown review flag {flag!r}; use one of {REVIEW_FLAGS}")
        entry = {"flag": flag, "note": str(note), "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self._save(lambda state: state["flags"].__setitem__(str(int(ann_id)), entry))

    def clear_flag(self, ann_id: int) -> None:
        self._save(lambda state: state["flags"].pop(str(int(ann_id)), None))

    def set_keypoint(self, ann_id: int, joint: int, x: float, y: float, visibility: int = 2) -> None:
        """Move (or add) one joint of a person; visibility 2 = labelled and visible, 1 = labelled, occluded,
        0 = remove the label."""
        if visibility not in (0, 1, 2) or joint < 0:
            raise DataError(f"joint must be >= 0 and visibility 0, 1 or 2; got joint {joint}, visibility {visibility}")
        values = [float(x), float(y), int(visibility)] if visibility else [0.0, 0.0, 0]
        self._save(lambda state: state["edits"].setdefault(str(int(ann_id)), {}).__setitem__(str(int(joint)), values))

    def reset_person(self, ann_id: int) -> None:
        """Forget every keypoint edit of one person."""
        self._save(lambda state: state["edits"].pop(str(int(ann_id)), None))

    # ----------------------------------------------------------------------------------------- export
    def corrected_keypoints(self, annotation: dict) -> list[float]:
        """The annotation's flat keypoint list with this review's edits applied."""
        flat = [float(v) for v in annotation["keypoints"]]
        for joint, (x, y, v) in self.edits.get(int(annotation["id"]), {}).items():
            if 3 * joint + 2 >= len(flat):
                raise DataError(f"review edit of annotation {annotation['id']} names joint {joint}, but the "
                                f"annotation has {len(flat) // 3} joints; is {self.path} for another dataset?")
            flat[3 * joint: 3 * joint + 3] = [x, y, float(int(v))]
        return flat

    def corrected_coco(self, data: dict) -> dict:
        """A deep copy of the COCO annotation dict with every edit applied (num_keypoints recounted)."""
        corrected = copy.deepcopy(data)
        known = {int(a["id"]) for a in corrected["annotations"]}
        unknown = sorted(set(self.edits) - known)
        if unknown:
            raise DataError(f"{self.path} edits annotation ids {unknown[:5]} that are not in {self.ann_path}; it "
                            "belongs to another version of the dataset")
        for annotation in corrected["annotations"]:
            if int(annotation["id"]) in self.edits:
                annotation["keypoints"] = [round(v, 2) for v in self.corrected_keypoints(annotation)]
                for index in range(2, len(annotation["keypoints"]), 3):
                    annotation["keypoints"][index] = int(annotation["keypoints"][index])
                annotation["num_keypoints"] = sum(v > 0 for v in annotation["keypoints"][2::3])
        return corrected

    def export_coco(self, data: dict, out_path: str | os.PathLike) -> Path:
        out = Path(out_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(self.corrected_coco(data)))
        return out

    def flag_rows(self, data: dict) -> list[dict[str, Any]]:
        """One row per flagged or edited person, in annotation order."""
        files = {image["id"]: image.get("file_name", "") for image in data["images"]}
        flags, edits = self.flags, self.edits
        rows = []
        for annotation in data["annotations"]:
            ann_id = int(annotation["id"])
            if ann_id not in flags and ann_id not in edits:
                continue
            flag = flags.get(ann_id, {})
            rows.append({"image_id": annotation["image_id"], "file_name": files.get(annotation["image_id"], ""),
                         "ann_id": ann_id, "flag": flag.get("flag", ""), "note": flag.get("note", ""),
                         "edited_joints": " ".join(str(j) for j in sorted(edits.get(ann_id, {}))),
                         "flagged_at": flag.get("at", "")})
        return rows

    def export_flags_csv(self, data: dict, out_path: str | os.PathLike) -> Path:
        out = Path(out_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=FLAG_CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(self.flag_rows(data))
        return out
