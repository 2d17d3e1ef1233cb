"""Download the DCASE 2025 Task 2 development set from Zenodo into the DCASE layout.

`fetch_dcase(dest)` downloads the seven `dev_<machine>.zip` archives of Zenodo
record 15097779, verifies each against its md5, and unzips it into
`<dest>/<machine_type>/{train,test}/...` (+ `attributes_00.csv`), ready for
`build_manifest(dest)`.

- Checksums: taken from the spec when it carries them, otherwise from the
  record's JSON API (`files[].key`, `files[].checksum` = "md5:<hex>"). Without a
  checksum a download is refused unless `allow_unverified` is set.
- Resume: bytes go to `<archive>.part`; a rerun (or a retry after a dropped
  connection) continues it with an HTTP `Range` request. A server that ignores
  Range (answers 200) restarts the file cleanly from byte 0.
- A file whose md5 is wrong is moved aside to `<archive>.bad` (never unzipped)
  and reported with both sums. A resumed download that fails the check is
  fetched once more from scratch before giving up.
- Skip: an archive already present with the right md5 is not downloaded again;
  one already unzipped (a marker in `.download/` records its md5) is not
  unzipped again.
- Unzip refuses entries that would land outside `dest` (absolute paths, `..`,
  symlinks: "zip-slip") before writing anything.
Archives and markers live in `<dest>/.download/` (hidden: the reader skips it).
"""

from __future__ import annotations

import re
import shutil
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import Literal

import requests
from pydantic import BaseModel, Field, field_validator
from tqdm.auto import tqdm

from asdflow.data.audio import md5_of
from asdflow.errors import DataError
from asdflow.progress import progress_bar

DCASE2025_DEV_RECORD = "15097779"
DCASE2025_DEV_FILES = [
    "dev_bearing.zip",
    "dev_fan.zip",
    "dev_gearbox.zip",
    "dev_slider.zip",
    "dev_ToyCar.zip",
    "dev_ToyTrain.zip",
    "dev_valve.zip",
]
DOWNLOAD_DIR = ".download"
_SPLIT_FOLDERS = frozenset({"train", "test", "supplemental", "source_test", "target_test"})
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class DcaseDownloadSpec(BaseModel):
    """Where the archives are and how to fetch them; every URL overridable (mirrors, tests)."""

    base_url: str = f"https://zenodo.org/records/{DCASE2025_DEV_RECORD}/files/"
    api_url: str | None = f"https://zenodo.org/api/records/{DCASE2025_DEV_RECORD}"
    files: list[str] = Field(default_factory=lambda: list(DCASE2025_DEV_FILES))
    checksums: dict[str, str] = Field(default_factory=dict)  # file -> md5 hex ("md5:" prefix accepted)
    allow_unverified: bool = False  # download files no checksum is known for (not recommended)
    timeout_s: float = 60.0  # connect and per-read timeout
    retries: int = Field(3, ge=0)  # extra attempts after a dropped connection or a 5xx/429, each resuming
    backoff_s: float = Field(2.0, ge=0)  # wait before retry n: backoff_s * 2**(n-1)
    chunk_bytes: int = Field(1 << 20, gt=0)
    keep_archives: bool = True  # keep the zips in .download/ (a rerun then skips by checksum)

    @field_validator("base_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("checksums")
    @classmethod
    def _plain_md5(cls, value: dict[str, str]) -> dict[str, str]:
        return {name: _normalise_md5(name, checksum, "spec") for name, checksum in value.items()}

    def url_of(self, file_name: str) -> str:
        return self.base_url + file_name

    def with_urls(self, base_url: str | None = None, api_url: str | None = None) -> "DcaseDownloadSpec":
        """A copy pointing elsewhere (the CLI's --url / --api-url)."""
        update: dict[str, object] = {}
        if base_url:
            update["base_url"] = base_url if base_url.endswith("/") else base_url + "/"
        if api_url:
            update["api_url"] = api_url
        return self.model_copy(update=update)


class FetchedFile(BaseModel):
    file: str
    url: str
    machine_type: str
    md5: str | None
    status: Literal["downloaded", "resumed", "present", "extracted-before"]
    bytes_downloaded: int = 0
    extracted_entries: int = 0


class FetchReport(BaseModel):
    dest: str
    files: list[FetchedFile] = Field(default_factory=list)

    @property
    def machine_types(self) -> list[str]:
        return sorted({f.machine_type for f in self.files})


def fetch_dcase(
    dest: str | Path,
    spec: DcaseDownloadSpec | None = None,
    progress: bool = True,
    machine_types: list[str] | None = None,
) -> FetchReport:
    """Download, verify and unzip the DCASE archives into `dest` (see the module docstring).

    machine_types: only these (by the `dev_<machine>.zip` name); default all.
    Every archive is attempted; if any fails, the others are still completed and
    one DataError then lists every failure.
    """
    spec = spec or DcaseDownloadSpec()
    dest = Path(dest).expanduser().absolute()
    files = _selected_files(spec, machine_types)
    downloads = dest / DOWNLOAD_DIR
    downloads.mkdir(parents=True, exist_ok=True)
    report = FetchReport(dest=str(dest))
    failures: list[str] = []
    with requests.Session() as session:
        session.headers.update({"User-Agent": "asdflow-fetch", "Accept-Encoding": "identity"})
        checksums = _checksums(spec, files, session)
        for file_name in files:
            try:
                report.files.append(_fetch_one(file_name, checksums.get(file_name), dest, spec, session, progress))
            except DataError as err:
                failures.append(str(err))
    if failures:
        raise DataError(f"{len(failures)} of {len(files)} DCASE archive(s) failed: " + "; ".join(failures))
    return report


def fetch_checksums(api_url: str, session: requests.Session | None = None, timeout_s: float = 60.0) -> dict[str, str]:
    """md5 per file name from a Zenodo record's JSON API (`files[].key`, `files[].checksum`)."""
    own = session is None
    session = session or requests.Session()
    try:
        response = session.get(api_url, timeout=timeout_s)
        if response.status_code != 200:
            raise DataError(f"{api_url}: cannot read checksums (HTTP {response.status_code})")
        payload = response.json()
    except ValueError:  # before RequestException: requests' JSONDecodeError is both
        raise DataError(f"{api_url}: cannot read checksums (the answer is not JSON)") from None
    except requests.RequestException as err:
        raise DataError(f"{api_url}: cannot read checksums ({_brief(err)})") from None
    finally:
        if own:
            session.close()
    entries = payload.get("files") if isinstance(payload, dict) else None
    if isinstance(entries, dict):  # the older Zenodo shape: {"entries": {key: {...}}} or {"entries": [...]}
        entries = entries.get("entries")
        entries = list(entries.values()) if isinstance(entries, dict) else entries
    if not isinstance(entries, list):
        raise DataError(f"{api_url}: cannot read checksums (no 'files' list in the record)")
    checksums = {}
    for entry in entries:
        if isinstance(entry, dict) and entry.get("key") and entry.get("checksum"):
            checksums[str(entry["key"])] = _normalise_md5(str(entry["key"]), str(entry["checksum"]), api_url)
    return checksums


def extract_archive(archive: Path, dest: Path, machine_type: str, progress: bool = True) -> int:
    """Unzip `archive` into `<dest>/<machine_type>/...`; returns the number of files written.

    Whatever folder the archive wraps its machine folder in is dropped (`dev_data/raw/fan/train/x`
    -> `fan/train/x`); an archive holding bare `train/`, `test/` is put under `machine_type`.
    Every entry is checked before anything is written; one that escapes `dest` refuses the archive.
    """
    dest = dest.absolute()
    try:
        with zipfile.ZipFile(archive) as zf:
            plan = _extraction_plan(zf.infolist(), dest, machine_type, archive)
            written = 0
            for info, target in progress_bar(plan, desc=f"unzip {archive.name}", enabled=progress):
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".unzipping")
                with zf.open(info) as source, open(partial, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
                partial.replace(target)
                written += 1
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise DataError(f"{archive}: not a valid zip archive ({err})") from None
    return written


def _selected_files(spec: DcaseDownloadSpec, machine_types: list[str] | None) -> list[str]:
    if machine_types is None:
        return list(spec.files)
    by_machine = {_machine_of(f): f for f in spec.files}
    unknown = [m for m in machine_types if m not in by_machine]
    if unknown:
        raise DataError(f"no archive for machine type(s) {', '.join(unknown)} (available: {', '.join(sorted(by_machine))})")
    return [by_machine[m] for m in machine_types]


def _machine_of(file_name: str) -> str:
    """dev_ToyCar.zip -> ToyCar: the machine folder the archive unzips into."""
    return file_name.removesuffix(".zip").removeprefix("dev_")


def _checksums(spec: DcaseDownloadSpec, files: list[str], session: requests.Session) -> dict[str, str]:
    checksums = {f: spec.checksums[f] for f in files if f in spec.checksums}
    missing = [f for f in files if f not in checksums]
    if not missing:
        return checksums
    if spec.api_url:
        try:
            published = fetch_checksums(spec.api_url, session, spec.timeout_s)
        except DataError:
            if not spec.allow_unverified:
                raise
            published = {}
        checksums.update({f: published[f] for f in missing if f in published})
    unknown = [f for f in files if f not in checksums]
    if unknown and not spec.allow_unverified:
        where = spec.api_url or "the spec (no api_url)"
        raise DataError(f"no md5 checksum for {', '.join(unknown)} in {where}; refusing an unverified download")
    return checksums


def _fetch_one(
    file_name: str, expected: str | None, dest: Path, spec: DcaseDownloadSpec, session: requests.Session, progress: bool
) -> FetchedFile:
    url = spec.url_of(file_name)
    machine_type = _machine_of(file_name)
    downloads = dest / DOWNLOAD_DIR
    archive = downloads / file_name
    marker = downloads / (file_name + ".extracted")
    if expected and marker.exists() and marker.read_text().strip() == expected and (dest / machine_type).is_dir():
        return FetchedFile(file=file_name, url=url, machine_type=machine_type, md5=expected, status="extracted-before")

    status: Literal["downloaded", "resumed", "present"] = "present"
    received = 0
    if archive.exists() and expected and md5_of(archive) == expected:
        pass  # already here and whole
    else:
        if archive.exists():  # wrong or unverifiable: put it aside, fetch again
            archive.replace(archive.with_name(archive.name + ".bad"))
        status, received = _download_verified(url, archive, expected, spec, session, progress)

    marker.unlink(missing_ok=True)
    entries = extract_archive(archive, dest, machine_type, progress)
    marker.write_text((expected or md5_of(archive)) + "\n")
    if not spec.keep_archives:
        archive.unlink()
    return FetchedFile(
        file=file_name, url=url, machine_type=machine_type, md5=expected, status=status,
        bytes_downloaded=received, extracted_entries=entries,
    )  # fmt: skip


def _download_verified(
    url: str, archive: Path, expected: str | None, spec: DcaseDownloadSpec, session: requests.Session, progress: bool
) -> tuple[Literal["downloaded", "resumed"], int]:
    part = archive.with_name(archive.name + ".part")
    bad = archive.with_name(archive.name + ".bad")
    received = 0
    for fresh_try in (False, True):
        got, resumed = _download(url, part, spec, session, progress)
        received += got
        actual = md5_of(part)
        if expected is None or actual == expected:
            part.replace(archive)
            return ("resumed" if resumed else "downloaded"), received
        part.replace(bad)
        if not resumed or fresh_try:
            raise DataError(
                f"{archive.name}: md5 mismatch from {url}: expected {expected}, got {actual}; "
                f"the download was moved aside to {bad} and not unzipped"
            )
        # a resumed file can be spoiled by its old part (the server's file changed): once more from byte 0
    raise AssertionError("unreachable")


def _download(url: str, part: Path, spec: DcaseDownloadSpec, session: requests.Session, progress: bool) -> tuple[int, bool]:
    """Fetch `url` into `part`, resuming what is there. Bounded retries.

    Returns (bytes received, whether the file kept bytes from before a Range request).
    """
    received = 0
    resumed = False
    last_error = ""
    for attempt in range(spec.retries + 1):
        if attempt:
            time.sleep(spec.backoff_s * 2 ** (attempt - 1))
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with session.get(url, headers=headers, stream=True, timeout=spec.timeout_s) as response:
                if response.status_code == 416 and offset:
                    if _complete_size(response.headers.get("Content-Range")) == offset:
                        return received, True  # the part was already whole
                    part.unlink()  # longer than the file: start over
                    last_error = "HTTP 416 (the partial file did not fit the remote file)"
                    continue
                if response.status_code in _RETRYABLE_STATUS:
                    last_error = f"HTTP {response.status_code}"
                    continue
                if response.status_code == 206 and offset:
                    if _range_start(response.headers.get("Content-Range")) != offset:
                        part.unlink()  # an answer for other bytes than asked: start over
                        last_error = "HTTP 206 for another range than requested"
                        continue
                    mode, resumed = "ab", True
                elif response.status_code == 200:
                    mode, offset, resumed = "wb", 0, False  # no Range support (or a fresh start): from byte 0
                else:
                    raise DataError(f"{url}: HTTP {response.status_code} {response.reason}")
                length = response.headers.get("Content-Length")
                total = offset + int(length) if length and length.isdigit() else None
                with open(part, mode) as sink, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=part.name.removesuffix(".part"), disable=not progress, leave=False, dynamic_ncols=True,
                ) as bar:  # fmt: skip
                    for chunk in response.iter_content(spec.chunk_bytes):
                        sink.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                if total is not None and part.stat().st_size < total:
                    last_error = f"connection closed after {part.stat().st_size} of {total} bytes"
                    continue
                return received, resumed
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
            last_error = _brief(err)
        except requests.RequestException as err:
            raise DataError(f"{url}: download failed ({_brief(err)})") from None
    kept = f"; the partial file {part} is kept, rerun to resume" if part.exists() else ""
    raise DataError(f"{url}: download failed after {spec.retries + 1} attempt(s) ({last_error}){kept}")


def _extraction_plan(infos: list[zipfile.ZipInfo], dest: Path, machine_type: str, archive: Path) -> list[tuple[zipfile.ZipInfo, Path]]:
    root = dest.resolve()
    entries: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    for info in infos:
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if not parts or parts[0] == "__MACOSX" or PurePosixPath(name).name.startswith("._"):
            continue  # macOS resource forks: not data
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise DataError(f"{archive}: refusing entry '{info.filename}': it would land outside {dest} (zip-slip)")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise DataError(f"{archive}: refusing entry '{info.filename}': symbolic links are not unzipped")
        entries.append((info, parts))
    prefix, prepend = _layout_prefix([p for _, p in entries], machine_type)
    plan = []
    for info, parts in entries:
        if parts[: len(prefix)] == prefix:
            parts = parts[len(prefix) :]
        if prepend:
            parts = (machine_type, *parts)
        if not parts:
            continue
        target = dest.joinpath(*parts)
        if not target.resolve().is_relative_to(root):
            raise DataError(f"{archive}: refusing entry '{info.filename}': it would land outside {dest} (zip-slip)")
        plan.append((info, target))
    return plan


def _layout_prefix(all_parts: list[tuple[str, ...]], machine_type: str) -> tuple[tuple[str, ...], bool]:
    """(folders to strip, whether to prepend machine_type) so entries become <machine>/<split>/..."""
    for parts in all_parts:
        for i, part in enumerate(parts[:-1]):
            if part in _SPLIT_FOLDERS:
                if i == 0:
                    return (), True  # bare train/, test/
                return parts[: i - 1], False  # keep the machine folder, drop what wraps it
    return (), False


def _range_start(content_range: str | None) -> int | None:
    match = re.match(r"^bytes (\d+)-\d+/(\d+|\*)$", (content_range or "").strip())
    return int(match[1]) if match else None


def _complete_size(content_range: str | None) -> int | None:
    match = re.match(r"^bytes \*/(\d+)$", (content_range or "").strip())
    return int(match[1]) if match else None


def _normalise_md5(file_name: str, checksum: str, where: str) -> str:
    value = checksum.strip().lower()
    algorithm, _, digest = value.rpartition(":")
    if algorithm not in ("", "md5") or not _MD5.match(digest):
        raise DataError(f"{where}: checksum of {file_name} is not an md5 ('{checksum}')")
    return digest


def _brief(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[-1][:300] if text else type(err).__name__
