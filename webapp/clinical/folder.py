"""The import folder: where an import job may read (never outside FIRETIME_IMPORT_DIR), which
files wait there (oldest first), and where each goes after its import (processed/<date>/, or
failed/ with <name>.error.txt beside it)."""
import fnmatch
import os
from datetime import date

PROCESSED = "processed"
FAILED = "failed"
PATTERN_MAX = 100
SUBDIRECTORY_MAX = 255


class FolderError(ValueError):
    """A subdirectory or pattern that cannot be used, in a sentence for the form or the log."""


def check_subdirectory(base: str, subdirectory: str) -> str:
    """The folder an import reads: `base`, or `subdirectory` inside it. Refuses absolute paths,
    `..`, a path that leaves `base` through a symbolic link, and a folder that does not exist."""
    subdirectory = (subdirectory or "").strip()
    real_base = os.path.realpath(base)
    if not subdirectory:
        return real_base
    if "\x00" in subdirectory or len(subdirectory) > SUBDIRECTORY_MAX:
        raise FolderError(f"Give a folder name of at most {SUBDIRECTORY_MAX} characters.")
    if os.path.isabs(subdirectory) or subdirectory.startswith(("~", "\\")):
        raise FolderError("Give a folder inside the import directory (a relative path), not an absolute path.")
    if ".." in subdirectory.replace("\\", "/").split("/"):
        raise FolderError("A folder name may not contain “..”: imports read only inside the import directory.")
    target = os.path.realpath(os.path.join(real_base, subdirectory))
    if os.path.commonpath([real_base, target]) != real_base:
        raise FolderError("This folder leads outside the import directory (through a symbolic link): refused.")
    if not os.path.isdir(target):
        raise FolderError(f"There is no folder “{subdirectory}” in the import directory.")
    return target


def check_pattern(pattern: str) -> str:
    pattern = (pattern or "").strip()
    if not pattern:
        raise FolderError("Give a file pattern, such as *.xml.")
    if len(pattern) > PATTERN_MAX or "\x00" in pattern:
        raise FolderError(f"Give a file pattern of at most {PATTERN_MAX} characters.")
    if "/" in pattern or "\\" in pattern:
        raise FolderError("A file pattern names files in the folder, without a path: such as *.xml.")
    return pattern


def waiting_files(folder: str, pattern: str) -> list[str]:
    """The files matching the pattern in the folder (not in its subfolders), oldest first.
    A file that goes away while the folder is listed is left out."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not fnmatch.fnmatchcase(entry.name, pattern) or entry.name.endswith(".error.txt"):
                continue
            try:
                if not entry.is_file(follow_symlinks=False) and not entry.is_symlink():
                    continue
                found.append((entry.stat(follow_symlinks=False).st_mtime, entry.name, entry.path))
            except FileNotFoundError:
                continue
    return [path for _, _, path in sorted(found)]


def escapes(base: str, path: str) -> bool:
    """The file is a symbolic link that leads outside the import directory."""
    real_base = os.path.realpath(base)
    return os.path.commonpath([real_base, os.path.realpath(path)]) != real_base


def move_processed(folder: str, path: str, today: date) -> str:
    return _move(path, os.path.join(folder, PROCESSED, today.isoformat()))


def move_failed(folder: str, path: str, reason: str) -> str:
    """Move the file to failed/ and write why beside it; returns where it went."""
    moved = _move(path, os.path.join(folder, FAILED))
    with open(moved + ".error.txt", "w", encoding="utf-8") as note:
        note.write(reason.rstrip() + "\n")
    return moved


def _move(path: str, into: str) -> str:
    """Move without overwriting: a second file of the same name gets a number."""
    os.makedirs(into, exist_ok=True)
    name = os.path.basename(path)
    stem, ext = os.path.splitext(name)
    target, n = os.path.join(into, name), 1
    while os.path.lexists(target):
        target = os.path.join(into, f"{stem}.{n}{ext}")
        n += 1
    os.rename(path, target)
    return target
