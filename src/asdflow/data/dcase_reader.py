"""Read a DCASE Task 2 layout into a typed Manifest, listing every file it cannot use.

Layout: `root` is the dataset root that holds one folder per machine type:

    <root>/<machine_type>/{train,test,supplemental}/<clip>.wav
    <root>/<machine_type>/attributes_XX.csv          (optional, DCASE 2023+)

The DCASE 2021 folders `source_test/` and `target_test/` are read as `test`
(and the name's domain must agree with the folder). As a convenience a root that
is itself one machine folder (it holds `train/`, `test/` or `supplemental/`) is
read as that single machine type, named after the folder.

Rules:
- every `.wav` either becomes a ClipRecord or a ManifestProblem with a reason,
  never dropped silently: names no naming fits, files no header can be read
  from, empty files, clips outside `<machine>/<split>/`, a name whose split
  (or domain) disagrees with its folder (a train-named clip in `test/`);
- files that look like audio but are not wav (.flac, .mp3, ...) are problems;
  other files (csv, json, README) are ignored; hidden files and folders
  (`.dvc`, `.download`, `._x.wav`) and `__MACOSX` are not part of the data;
- `attributes_XX.csv` rows take precedence over the attributes in the name:
  a clip with a row gets exactly the row's attributes; a row naming a file that
  is not on disk is a problem;
- records are sorted by machine type, then path; problems by path.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from pathlib import Path

from asdflow.data.audio import md5_of, read_audio_info
from asdflow.data.manifest import ClipRecord, Manifest, ManifestProblem
from asdflow.data.naming import NO_ATTRIBUTE_MARKERS, ParsedName, parse_clip_name
from asdflow.errors import AudioError, DataError
from asdflow.progress import progress_bar

# Folder name -> split; the DCASE 2021 domain folders also fix the domain.
SPLIT_FOLDERS = {"train": "train", "test": "test", "supplemental": "supplemental", "source_test": "test", "target_test": "test"}
FOLDER_DOMAIN = {"source_test": "source", "target_test": "target"}
# Audio files that are not wav: listed as problems so a wrong export is noticed.
AUDIO_LIKE_SUFFIXES = frozenset({".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".au", ".wma", ".wv"})
ATTRIBUTES_CSV = re.compile(r"^attributes_(\d{2})\.csv$")
_PAIR_COLUMN = re.compile(r"^d(\d+)([pv])$")
_IGNORED_DIRS = frozenset({"__MACOSX"})


def build_manifest(
    root: str | Path,
    machine_types: list[str] | None = None,
    read_headers: bool = True,
    compute_md5: bool = True,
    progress: bool = True,
) -> Manifest:
    """Walk a DCASE-layout dataset root into a Manifest (records + problems).

    read_headers: read sample rate, channels and duration (and catch unreadable
    or empty files); compute_md5: fill `md5`. Raises DataError when the root is
    missing, not a folder, holds no clip at all, or lacks a requested machine type.
    """
    root = Path(os.path.abspath(Path(root).expanduser()))
    if not root.exists():
        raise DataError(f"{root}: dataset root does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: dataset root is not a directory")

    machine_dirs, problems = _machine_dirs(root, machine_types)
    candidates: list[tuple[str, str, Path, ParsedName]] = []  # machine, folder, path, parsed
    attribute_files: dict[str, list[Path]] = {}
    seen_files = 0
    for machine_type, machine_dir in machine_dirs:
        for path in _walk_files(machine_dir):
            seen_files += _is_audio(path)
            rel = path.relative_to(machine_dir).parts
            if len(rel) == 1 and ATTRIBUTES_CSV.match(path.name):
                attribute_files.setdefault(machine_type, []).append(path)
                continue
            if not _is_audio(path):
                continue
            if len(rel) != 2 or rel[0] not in SPLIT_FOLDERS:
                problems.append(_problem(path, f"not in the DCASE layout: expected {machine_type}/<train|test|supplemental>/<clip>.wav"))
            elif path.suffix.lower() != ".wav":
                problems.append(_problem(path, f"not a wav file ({path.suffix}): DCASE clips are 16-bit PCM wav"))
            elif (parsed := parse_clip_name(path.name)) is None:
                problems.append(_problem(path, "file name fits no DCASE naming (see asdflow.data.naming)"))
            elif (mismatch := _folder_mismatch(rel[0], parsed)) is not None:
                problems.append(_problem(path, mismatch))
            else:
                candidates.append((machine_type, rel[0], path, parsed))

    if seen_files == 0 and not problems:
        raise DataError(f"{root}: no audio clips found (expected <root>/<machine_type>/<train|test>/<clip>.wav)")

    records: list[ClipRecord] = []
    for machine_type, folder, path, parsed in progress_bar(candidates, desc="reading clips", enabled=progress):
        record = _record(machine_type, folder, path, parsed, read_headers, compute_md5, problems)
        if record is not None:
            records.append(record)

    for machine_type, csv_paths in attribute_files.items():
        machine_dir = dict(machine_dirs)[machine_type]
        for csv_path in sorted(csv_paths):
            _merge_attributes(csv_path, machine_dir, records, problems)

    records.sort(key=lambda r: (r.machine_type, r.path))
    problems.sort(key=lambda p: (p.path, p.reason))
    return Manifest(root=str(root), records=records, problems=problems)


def summarize_manifest(manifest: Manifest) -> dict:
    """Counts per machine type (split, domain, label, and their combinations) and the problems."""
    machines: dict[str, dict] = {}
    for machine_type in manifest.machine_types():
        rows = manifest.select(machine_type=machine_type).records
        machines[machine_type] = {
            "clips": len(rows),
            "split": dict(sorted(Counter(r.split for r in rows).items())),
            "domain": dict(sorted(Counter(str(r.domain) for r in rows).items())),
            "label": dict(sorted(Counter(str(r.label) for r in rows).items())),
            "section": dict(sorted(Counter(r.section for r in rows).items())),
            "split/domain/label": dict(sorted(Counter(f"{r.split}/{r.domain}/{r.label}" for r in rows).items())),
        }
    return {
        "root": manifest.root,
        "clips": len(manifest.records),
        "problem_count": len(manifest.problems),
        "machine_types": machines,
        "problems": [p.model_dump() for p in manifest.problems],
    }


def write_manifest_report(manifest: Manifest, path: str | Path) -> Path:
    """Write summarize_manifest() as JSON to `path` (a file, or a folder -> manifest_report.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest_report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summarize_manifest(manifest), indent=2))
    return path


def _machine_dirs(root: Path, machine_types: list[str] | None) -> tuple[list[tuple[str, Path]], list[ManifestProblem]]:
    problems: list[ManifestProblem] = []
    children = sorted(p for p in root.iterdir() if not _hidden(p.name))
    if any(p.is_dir() and p.name in SPLIT_FOLDERS for p in children):
        found = {root.name: root}  # the root is itself one machine folder
    else:
        found = {p.name: p for p in children if p.is_dir()}
        # audio lying directly in the root belongs to no machine type
        problems += [
            _problem(p, "outside any machine folder: expected <root>/<machine_type>/<split>/<clip>")
            for p in children
            if p.is_file() and _is_audio(p)
        ]
    if machine_types is not None:
        missing = [m for m in machine_types if m not in found]
        if missing:
            raise DataError(f"{root}: no folder for machine type(s) {', '.join(missing)} (found: {', '.join(sorted(found)) or 'none'})")
        found = {m: found[m] for m in machine_types}
    return sorted(found.items()), problems


def _walk_files(directory: Path) -> list[Path]:
    files = []
    for current, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        files += [Path(current) / f for f in sorted(filenames) if not _hidden(f)]
    return files


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in _IGNORED_DIRS


def _is_audio(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix == ".wav" or suffix in AUDIO_LIKE_SUFFIXES


def _folder_mismatch(folder: str, parsed: ParsedName) -> str | None:
    split = SPLIT_FOLDERS[folder]
    if parsed.split is not None and parsed.split != split:
        return f"split mismatch: the name says '{parsed.split}' but the clip lies in '{folder}/'"
    if split == "supplemental" and parsed.naming != "supplemental":
        return f"split mismatch: a {parsed.naming} name in 'supplemental/' (expected section_XX_<domain>_supplemental_<clean|noise>_NNNN)"
    folder_domain = FOLDER_DOMAIN.get(folder)
    if folder_domain is not None and parsed.domain is not None and parsed.domain != folder_domain:
        return f"domain mismatch: the name says '{parsed.domain}' but the clip lies in '{folder}/'"
    return None


def _record(
    machine_type: str,
    folder: str,
    path: Path,
    parsed: ParsedName,
    read_headers: bool,
    compute_md5: bool,
    problems: list[ManifestProblem],
) -> ClipRecord | None:
    sample_rate = channels = duration = md5 = None
    if read_headers:
        try:
            info = read_audio_info(path)
        except AudioError as err:
            problems.append(_problem(path, str(err).removeprefix(f"{path}: ")))
            return None
        if info.frames == 0:
            problems.append(_problem(path, "empty audio (0 frames)"))
            return None
        sample_rate, channels, duration = info.sample_rate, info.channels, info.duration
    if compute_md5:
        try:
            md5 = md5_of(path)
        except OSError as err:
            problems.append(_problem(path, f"cannot be read ({err.strerror or err})"))
            return None
    return ClipRecord(
        path=str(path),
        name=path.name,
        machine_type=machine_type,
        section=parsed.section,
        domain=parsed.domain or FOLDER_DOMAIN.get(folder),
        split=SPLIT_FOLDERS[folder],
        label=parsed.label,
        supplemental_kind=parsed.supplemental_kind,
        attributes=dict(parsed.attributes),
        naming=parsed.naming,
        sample_rate=sample_rate,
        channels=channels,
        duration=duration,
        md5=md5,
    )


def _merge_attributes(csv_path: Path, machine_dir: Path, records: list[ClipRecord], problems: list[ManifestProblem]) -> None:
    """Apply the rows of one attributes_XX.csv to the records of its machine folder."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        problems.append(_problem(csv_path, f"attributes file cannot be read ({err})"))
        return
    if not rows or "file_name" not in rows[0]:
        problems.append(_problem(csv_path, "attributes file has no 'file_name' column or no rows"))
        return
    by_path = {Path(r.path): r for r in records}
    problem_paths = {p.path for p in problems}
    by_name: dict[str, list[ClipRecord]] = {}
    for r in records:
        if Path(r.path).parent.parent == machine_dir:
            by_name.setdefault(r.name, []).append(r)
    for line, row in enumerate(rows, start=2):
        file_name = (row.get("file_name") or "").strip().replace("\\", "/").removeprefix("./")
        if not file_name:
            problems.append(_problem(csv_path, f"line {line}: empty file_name"))
            continue
        target = _resolve_listed(file_name, machine_dir)
        record = by_path.get(target) if target is not None else None
        if record is None and "/" not in file_name and len(by_name.get(file_name, [])) == 1:
            record = by_name[file_name][0]  # a bare clip name, unique in this machine folder
        if record is not None:
            record.attributes = _row_attributes(row)
            continue
        listed = target if target is not None else machine_dir / file_name
        if str(listed) in problem_paths:
            continue  # the file is there but is itself a problem (unreadable, misnamed): already listed
        reason = "is not a clip of this dataset" if listed.exists() else "missing on disk"
        problems.append(_problem(listed, f"listed in {csv_path.name} (line {line}) but {reason}"))


def _resolve_listed(file_name: str, machine_dir: Path) -> Path | None:
    parts = Path(file_name).parts
    if not parts or Path(file_name).is_absolute() or ".." in parts:
        return None
    # DCASE writes names relative to the dataset root (`ToyCar/train/x.wav`); accept
    # names relative to the machine folder (`train/x.wav`) as well.
    if len(parts) >= 3 and parts[0] == machine_dir.name:
        return machine_dir.parent.joinpath(*parts)
    return machine_dir.joinpath(*parts)


def _row_attributes(row: dict[str, str | None]) -> dict[str, str]:
    """`d1p,d1v,d2p,d2v,...` pairs in order; other columns as key=value; blanks and noAttribute skipped."""
    pairs: dict[int, dict[str, str]] = {}
    extra: dict[str, str] = {}
    for column, cell in row.items():
        if column is None or column == "file_name":
            continue
        value = (cell or "").strip() if isinstance(cell, str) else ""
        if match := _PAIR_COLUMN.match(column.strip()):
            pairs.setdefault(int(match[1]), {})[match[2]] = value
        elif value:
            extra[column.strip()] = value
    attributes: dict[str, str] = {}
    for number in sorted(pairs):
        key, value = pairs[number].get("p", ""), pairs[number].get("v", "")
        if key and key not in NO_ATTRIBUTE_MARKERS and value:
            attributes[key] = value
    attributes.update(extra)
    return attributes


def _problem(path: Path, reason: str) -> ManifestProblem:
    return ManifestProblem(path=str(path), reason=reason)
