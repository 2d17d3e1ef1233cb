"""fetch_dcase against a real HTTP server on 127.0.0.1 that mimics Zenodo (files + JSON API)."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asdflow.data.dcase_reader import build_manifest
from asdflow.data.fetch import DcaseDownloadSpec, extract_archive, fetch_checksums, fetch_dcase
from asdflow.errors import DataError

FAN_WAVS = ["train/section_00_source_train_normal_0000_m-n_W.wav", "test/section_00_target_test_anomaly_0000_m-n_X.wav"]
VALVE_WAVS = ["train/section_00_source_train_normal_0000_pat_00.wav", "test/section_00_source_test_normal_0000_pat_01.wav"]


@dataclass
class ZenodoState:
    """What the fake Zenodo serves, and what it was asked."""

    files: dict[str, bytes] = field(default_factory=dict)
    api_checksums: dict[str, str] = field(default_factory=dict)  # default: the true md5 of every file
    honour_range: bool = True
    truncate_next: dict[str, int] = field(default_factory=dict)  # file -> bytes sent before hanging up (once)
    delay_s: float = 0.0
    log: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)

    def file_requests(self) -> list[tuple[str, str | None]]:
        return [(p, r) for p, r in self.log if p.startswith("/files/")]


def _handler(state: ZenodoState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            state.log.append((self.path, self.headers.get("Range")))
            if state.delay_s:
                time.sleep(state.delay_s)
            if self.path == "/api/records/1":
                entries = [
                    {"key": name, "size": len(data), "checksum": "md5:" + state.api_checksums.get(name, hashlib.md5(data).hexdigest())}
                    for name, data in state.files.items()
                ]
                return self._send(200, json.dumps({"id": 1, "files": entries}).encode(), "application/json")
            name = self.path.removeprefix("/files/").split("?")[0]
            if not self.path.startswith("/files/") or name not in state.files:
                return self._send(404, b"not found")
            data = state.files[name]
            if name in state.truncate_next:
                cut = state.truncate_next.pop(name)
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:cut])
                self.wfile.flush()
                self.close_connection = True
                return None
            wanted = self.headers.get("Range")
            if wanted and state.honour_range:
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    return self._send(416, b"", extra={"Content-Range": f"bytes */{len(data)}"})
                return self._send(206, data[start:], extra={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
            return self._send(200, data)

        def _send(self, code: int, body: bytes, content_type: str = "application/octet-stream", extra: dict | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (the timeout test): nothing to answer

    return Handler


def _wav_bytes(seed: int) -> bytes:
    wav = np.random.default_rng(seed).uniform(-0.3, 0.3, 1600).astype(np.float32)  # 0.1 s
    buffer = io.BytesIO()
    sf.write(buffer, wav, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return out.getvalue()


@pytest.fixture()
def zenodo() -> Iterator[tuple[ZenodoState, str]]:
    fan = {f"fan/{name}": _wav_bytes(i) for i, name in enumerate(FAN_WAVS)}
    fan["fan/attributes_00.csv"] = (
        b"file_name,d1p,d1v\n"
        b"fan/train/section_00_source_train_normal_0000_m-n_W.wav,m-n,W\n"
        b"fan/test/section_00_target_test_anomaly_0000_m-n_X.wav,m-n,X\n"
    )
    # valve wrapped the way a hand-made archive might be: the wrapper folders are dropped
    valve = {f"dev_data/raw/valve/{name}": _wav_bytes(10 + i) for i, name in enumerate(VALVE_WAVS)}
    state = ZenodoState(files={"dev_fan.zip": _zip(fan), "dev_valve.zip": _zip(valve)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _spec(url: str, **changes: object) -> DcaseDownloadSpec:
    settings = dict(
        base_url=f"{url}/files", api_url=f"{url}/api/records/1", files=["dev_fan.zip", "dev_valve.zip"],
        timeout_s=5.0, retries=2, backoff_s=0.0, chunk_bytes=1024,
    )  # fmt: skip
    settings.update(changes)
    return DcaseDownloadSpec(**settings)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_default_spec_is_the_dcase2025_dev_record() -> None:
    spec = DcaseDownloadSpec()
    assert spec.url_of("dev_fan.zip") == "https://zenodo.org/records/15097779/files/dev_fan.zip"
    assert spec.api_url == "https://zenodo.org/api/records/15097779"
    assert sorted(spec.files) == sorted(f"dev_{m}.zip" for m in ["bearing", "fan", "gearbox", "slider", "ToyCar", "ToyTrain", "valve"])
    moved = spec.with_urls("http://127.0.0.1:9/x", "http://127.0.0.1:9/api")
    assert (moved.url_of("dev_fan.zip"), moved.api_url) == ("http://127.0.0.1:9/x/dev_fan.zip", "http://127.0.0.1:9/api")
    assert DcaseDownloadSpec(checksums={"a.zip": "MD5:" + "AB" * 16}).checksums == {"a.zip": "ab" * 16}
    with pytest.raises(DataError, match="not an md5"):
        DcaseDownloadSpec(checksums={"a.zip": "sha256:" + "ab" * 32})


def test_fresh_download_verifies_unzips_into_the_layout(zenodo: tuple[ZenodoState, str], tmp_path: Path) -> None:
    state, url = zenodo
    report = fetch_dcase(tmp_path / "dcase", _spec(url), progress=False)
    assert [(f.file, f.status, f.machine_type) for f in report.files] == [
        ("dev_fan.zip", "downloaded", "fan"),
        ("dev_valve.zip", "downloaded", "valve"),
    ]
    assert [f.md5 for f in report.files] == [_md5(state.files["dev_fan.zip"]), _md5(state.files["dev_valve.zip"])]
    assert report.files[0].bytes_downloaded == len(state.files["dev_fan.zip"])
    assert report.files[0].extracted_entries == 3
    assert ("/api/records/1", None) in state.log  # checksums came from the API
    dest = tmp_path / "dcase"
    assert (dest / ".download" / "dev_fan.zip").exists() and not list(dest.rglob("*.part"))
    assert not (dest / "dev_data").exists()
    manifest = build_manifest(dest, progress=False)
    assert manifest.problems == []
    assert [f"{r.machine_type}/{r.split}/{r.name}" for r in manifest.records] == sorted(
        [f"fan/{n}" for n in FAN_WAVS] + [f"valve/{n}" for n in VALVE_WAVS]
    )
    assert manifest.select(machine_type="fan", split="test").records[0].attributes == {"m-n": "X"}


def test_resume_after_a_truncated_part_uses_range(zenodo: tuple[ZenodoState, str], tmp_path: Path) -> None:
    state, url = zenodo
    data = state.files["dev_fan.zip"]
    half = len(data) // 2
    part = tmp_path / "dcase" / ".download" / "dev_fan.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:half])
    report = fetch_dcase(tmp_path / "dcase", _spec(url, files=["dev_fan.zip"]), progress=False)
    assert state.file_requests() == [("/files/dev_fan.zip", f"bytes={half}-")]
    assert (report.files[0].status, report.files[0].bytes_downloaded) == ("resumed", len(data) - half)
    assert (tmp_path / "dcase" / ".download" / "dev_fan.zip").read_bytes() == data
    assert (tmp_path / "dcase" / "fan" / FAN_WAVS[0]).exists()


def test_server_ignoring_range_restarts_cleanly(zenodo: tuple[ZenodoState, str], tmp_path: Path) -> None:
    state, url = zenodo
    state.honour_range = False
    data = state.files["dev_fan.zip"]
    part = tmp_path / "dcase" / ".download" / "dev_fan.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * (len(data) // 3))  # junk that must not survive
    report = fetch_dcase(tmp_path / "dcase", _spec(url, files=["dev_fan.zip"]), progress=False)
    assert state.file_requests() == [("/files/dev_fan.zip", f"bytes={len(data) // 3}-")]
    assert (report.files[0].status, report.files[0].bytes_downloaded) == ("downloaded", len(data))
    assert (tmp_path / "dcase" / ".download" / "dev_fan.zip").read_bytes() == data


def test_a_dropped_connection_is_resumed_within_the_call(zenodo: tuple[ZenodoState, str], tmp_path: Path) -> None:
    state, url = zenodo
    data = state.files["dev_valve.zip"]
    state.truncate_next["dev_valve.zip"] = 3000
    report = fetch_dcase(tmp_path / "dcase", _spec(url, files=["dev_valve.zip"]), progress=False)
    (first, no_range), (second, resume_from) = state.file_requests()
    assert first == second == "/files/dev_valve.zip" and no_range is None
    # what arrived before the hang-up (whole 1 KiB chunks) is kept and continued from
    assert resume_from is not None and 0 < int(resume_from.removeprefix("bytes=").rstrip("-")) <= 3000
    assert report.files[0].status == "resumed"
    assert (tmp_path / "dcase" / ".download" / "dev_valve.zip").read_bytes() == data


def test_checksum_mismatch_names_the_file_and_both_sums(zenodo: tuple[ZenodoState, str], tmp_path: Path) -> None:
    state, url = zenodo
    wrong = "0" * 32
    spec = _spec(url, checksums={"dev_fan.zip": wrong, "dev_valve.zip": _md5(state.files["dev_valve.zip"])})
    with pytest.raises(DataError) as info:
        fetch_dcase(tmp_path / "dcase", spec, progress=False)
    message = str(info.value)
    assert "dev_fan.zip" in message and wrong in message and _md5(state.files["dev_fan.zip"]) in message
    assert f"{url}/files/dev_fan.zip" in message
    dest = tmp_path / "dcase"
    assert (dest / ".download" / "dev_fan.zip.bad").read_bytes() == state.files["dev_fan.zip"]  # kept aside
    assert not (dest / ".download" / "dev_fan.zip").exists() and not (dest / "fan").exists()  # never unzipped
    assert (dest / "valve" / VALVE_WAVS[0]).exists()  # the good archive is still done
    assert all(not p.startswith("/api") for p, _ in state.log)  # the spec's sums: no API call


def test_a_spoiled_resume_is_fetched_again_from_scratch(zenodo: tuple[ZenodoState, str], tmp_path: Path) -> None:
    state, url = zenodo
    data = state.files["dev_fan.zip"]
    part = tmp_path / "dcase" / ".download" / "dev_fan.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\xff" * 100)  # an old part that does not belong to this file
    report = fetch_dcase(tmp_path / "dcase", _spec(url, files=["dev_fan.zip"]), progress=False)
    assert state.file_requests() == [("/files/dev_fan.zip", "bytes=100-"), ("/files/dev_fan.zip", None)]
    assert report.files[0].status == "downloaded"
    assert (tmp_path / "dcase" / ".download" / "dev_fan.zip").read_bytes() == data
    assert (tmp_path / "dcase" / ".download" / "dev_fan.zip.bad").exists()


def test_zip_slip_is_refused_before_writing_anything(zenodo: tuple[ZenodoState, str], tmp_path: Path) -> None:
    state, url = zenodo
    state.files["dev_evil.zip"] = _zip({"evil/train/ok.wav": b"x", "evil/../../escaped.txt": b"owned"})
    with pytest.raises(DataError, match="zip-slip"):
        fetch_dcase(tmp_path / "dcase", _spec(url, files=["dev_evil.zip"]), progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "dcase" / "evil").exists()


@pytest.mark.parametrize("entry", ["/etc/evil.txt", "C:/evil.txt", "a\\..\\..\\evil.txt"])
def test_extract_refuses_absolute_and_parent_entries(tmp_path: Path, entry: str) -> None:
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip({"m/train/ok.wav": b"x", entry: b"owned"}))
    with pytest.raises(DataError, match="zip-slip"):
        extract_archive(archive, tmp_path / "dest", "m", progress=False)
    assert not (tmp_path / "dest" / "m").exists()


def test_extract_refuses_symlinks(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("m/train/link.wav")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(DataError, match="symbolic links"):
        extract_archive(archive, tmp_path / "dest", "m", progress=False)


def test_extract_puts_bare_splits_under_the_machine_type(tmp_path: Path) -> None:
    archive = tmp_path / "dev_gearbox.zip"
    archive.write_bytes(_zip({"train/a.wav": b"1", "test/b.wav": b"2", "attributes_00.csv": b"file_name\n", "__MACOSX/._a.wav": b""}))
    assert extract_archive(archive, tmp_path / "dest", "gearbox", progress=False) == 3
    assert sorted(p.relative_to(tmp_path / "dest").as_posix() for p in (tmp_path / "dest").rglob("*") if p.is_file()) == [
        "gearbox/attributes_00.csv", "gearbox/test/b.wav", "gearbox/train/a.wav",
    ]  # fmt: skip
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match="not a valid zip"):
        extract_archive(tmp_path / "broken.zip", tmp_path / "dest", "x", progress=False)


def test_skip_when_present(zenodo: tuple[ZenodoState, str], tmp_path: Path) -> None:
    state, url = zenodo
    dest = tmp_path / "dcase"
    spec = _spec(url, files=["dev_fan.zip"])
    fetch_dcase(dest, spec, progress=False)
    state.log.clear()
    assert fetch_dcase(dest, spec, progress=False).files[0].status == "extracted-before"
    assert state.file_requests() == []
    # archive kept but not (or no longer) unzipped: checked by md5, unzipped again, not downloaded
    (dest / ".download" / "dev_fan.zip.extracted").unlink()
    (dest / "fan" / FAN_WAVS[0]).unlink()
    report = fetch_dcase(dest, spec, progress=False)
    assert (report.files[0].status, report.files[0].bytes_downloaded) == ("present", 0)
    assert state.file_requests() == [] and (dest / "fan" / FAN_WAVS[0]).exists()
    # an archive on disk that does not match is put aside and downloaded again
    (dest / ".download" / "dev_fan.zip.extracted").unlink()
    (dest / ".download" / "dev_fan.zip").write_bytes(b"stale")
    assert fetch_dcase(dest, spec, progress=False).files[0].status == "downloaded"
    assert (dest / ".download" / "dev_fan.zip.bad").read_bytes() == b"stale"


def test_http_errors_name_the_url_and_spare_the_others(zenodo: tuple[ZenodoState, str], tmp_path: Path) -> None:
    state, url = zenodo
    spec = _spec(url, files=["dev_pump.zip", "dev_fan.zip"], checksums={"dev_pump.zip": "1" * 32})
    with pytest.raises(DataError) as info:
        fetch_dcase(tmp_path / "dcase", spec, progress=False)
    assert f"{url}/files/dev_pump.zip: HTTP 404" in str(info.value)
    assert (tmp_path / "dcase" / "fan" / FAN_WAVS[0]).exists()


def test_missing_checksums_refuse_unless_allowed(zenodo: tuple[ZenodoState, str], tmp_path: Path) -> None:
    state, url = zenodo
    with pytest.raises(DataError, match="no md5 checksum for dev_fan.zip"):
        fetch_dcase(tmp_path / "a", _spec(url, files=["dev_fan.zip"], api_url=None), progress=False)
    with pytest.raises(DataError, match="api/nowhere: cannot read checksums \\(HTTP 404\\)"):
        fetch_dcase(tmp_path / "a", _spec(url, files=["dev_fan.zip"], api_url=f"{url}/api/nowhere"), progress=False)
    report = fetch_dcase(tmp_path / "b", _spec(url, files=["dev_fan.zip"], api_url=None, allow_unverified=True), progress=False)
    assert report.files[0].md5 is None and (tmp_path / "b" / "fan" / FAN_WAVS[1]).exists()


def test_fetch_checksums_reads_the_zenodo_api(zenodo: tuple[ZenodoState, str]) -> None:
    state, url = zenodo
    assert fetch_checksums(f"{url}/api/records/1") == {name: _md5(data) for name, data in state.files.items()}
    with pytest.raises(DataError, match="not JSON"):
        fetch_checksums(f"{url}/files/dev_fan.zip")


def test_machine_type_selection(zenodo: tuple[ZenodoState, str], tmp_path: Path) -> None:
    state, url = zenodo
    report = fetch_dcase(tmp_path / "dcase", _spec(url), progress=False, machine_types=["valve"])
    assert report.machine_types == ["valve"] and not (tmp_path / "dcase" / "fan").exists()
    with pytest.raises(DataError, match="no archive for machine type\\(s\\) pump"):
        fetch_dcase(tmp_path / "dcase", _spec(url), progress=False, machine_types=["pump"])


def test_a_stalled_server_times_out_with_the_url(zenodo: tuple[ZenodoState, str], tmp_path: Path) -> None:
    state, url = zenodo
    state.delay_s = 1.0
    spec = _spec(url, files=["dev_fan.zip"], checksums={"dev_fan.zip": _md5(state.files["dev_fan.zip"])}, timeout_s=0.3, retries=1)
    started = time.monotonic()
    with pytest.raises(DataError, match=f"{url}/files/dev_fan.zip: download failed after 2 attempt"):
        fetch_dcase(tmp_path / "dcase", spec, progress=False)
    assert time.monotonic() - started < 5


def test_cli_fetch_reports_the_machine_types(zenodo: tuple[ZenodoState, str], tmp_path: Path) -> None:
    """`asdflow data fetch-dcase` end to end against the local fake Zenodo (it once raised a TypeError
    after a good download)."""
    from typer.testing import CliRunner

    from asdflow.cli import app

    _, url = zenodo
    result = CliRunner().invoke(app, [
        "data", "fetch-dcase", str(tmp_path / "dcase"), "--url", f"{url}/files", "--api-url", f"{url}/api/records/1",
        "-m", "fan", "-m", "valve", "-q",
    ])
    assert result.exit_code == 0, result.output
    assert f"dataset in {tmp_path / 'dcase'}: machine types fan, valve" in result.output
    assert (tmp_path / "dcase" / "fan" / "train").is_dir() and (tmp_path / "dcase" / "valve").is_dir()
