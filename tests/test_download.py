"""The download code against a real HTTP server on 127.0.0.1: progress, resume, checksum, safe extraction."""
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from training import data, download as download_module
from training.data import DataError
from training.download import download, fetch, safe_extract


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves `files` by path, honouring `Range: bytes=N-` unless `ranges` is off; logs requests."""

    files: dict[str, bytes] = {}
    ranges = True
    requests: list[tuple[str, str | None]] = []

    def do_GET(self):
        body = self.files.get(self.path)
        self.requests.append((self.path, self.headers.get("Range")))
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.ranges and self.headers.get("Range", "").startswith("bytes="):
            start = int(self.headers["Range"][6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    RangeHandler.files, RangeHandler.requests, RangeHandler.ranges = {}, [], True
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield RangeHandler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def make_tar(entries: dict[str, bytes], links: dict[str, str] = {}) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def real_archive(mini_set: Path) -> bytes:
    """A small archive in the Speech Commands layout, made of real clips."""
    entries = {"testing_list.txt": b"yes/a.wav\n", "validation_list.txt": b"no/b.wav\n"}
    for word in ("yes", "no"):
        clip = sorted((mini_set / word).iterdir())[0]
        entries[f"./{word}/{'a' if word == 'yes' else 'b'}.wav"] = clip.read_bytes()
    return make_tar(entries)


def test_download_shows_progress_and_verifies(server, tmp_path, mini_set):
    handler, base = server
    body = real_archive(mini_set)
    handler.files["/sc.tar.gz"] = body
    progress = io.StringIO()
    path = download(f"{base}/sc.tar.gz", tmp_path / "sc.tar.gz", len(body), hashlib.sha256(body).hexdigest(), progress, chunk=4096)
    assert path.read_bytes() == body
    assert "100.0%" in progress.getvalue() and "sc.tar.gz" in progress.getvalue()
    assert not (tmp_path / "sc.tar.gz.part").exists()


def test_download_resumes_a_partial_file(server, tmp_path):
    handler, base = server
    body = bytes(range(256)) * 400
    handler.files["/big.bin"] = body
    (tmp_path / "big.bin.part").write_bytes(body[:40000])
    progress = io.StringIO()
    download(f"{base}/big.bin", tmp_path / "big.bin", len(body), hashlib.sha256(body).hexdigest(), progress)
    assert (tmp_path / "big.bin").read_bytes() == body
    assert handler.requests == [("/big.bin", "bytes=40000-")]
    assert "resuming big.bin" in progress.getvalue()


def test_download_restarts_when_the_server_ignores_the_range(server, tmp_path):
    handler, base = server
    handler.ranges = False
    body = b"speech" * 5000
    handler.files["/f.bin"] = body
    (tmp_path / "f.bin.part").write_bytes(b"garbage-prefix")
    download(f"{base}/f.bin", tmp_path / "f.bin", len(body), hashlib.sha256(body).hexdigest(), io.StringIO())
    assert handler.requests == [("/f.bin", "bytes=14-")]
    assert (tmp_path / "f.bin").read_bytes() == body


def test_checksum_mismatch_is_a_clear_error_and_the_file_is_removed(server, tmp_path):
    handler, base = server
    body = b"not the archive you pinned" * 100
    handler.files["/x.tar.gz"] = body
    with pytest.raises(DataError, match=r"x.tar.gz: SHA-256 [0-9a-f]{64} does not match the pinned 0{64}"):
        download(f"{base}/x.tar.gz", tmp_path / "x.tar.gz", len(body), "0" * 64, io.StringIO())
    assert not (tmp_path / "x.tar.gz.part").exists() and not (tmp_path / "x.tar.gz").exists()


def test_unreachable_server_points_to_a_local_copy(tmp_path):
    with pytest.raises(DataError, match="cannot download .* Use --data-dir or KWS_DATA_DIR"):
        download("http://127.0.0.1:9/none.tar.gz", tmp_path / "none.tar.gz", 10, "0" * 64, io.StringIO())


@pytest.mark.parametrize(
    "entries, links, message",
    [
        ({"../evil.txt": b"x"}, {}, "refusing path outside the destination '../evil.txt'"),
        ({"yes/../../evil.txt": b"x"}, {}, "refusing path outside the destination"),
        ({"/etc/evil.txt": b"x"}, {}, "refusing absolute path '/etc/evil.txt'"),
        ({}, {"yes/link.wav": "/etc/passwd"}, "refusing link 'yes/link.wav' -> '/etc/passwd'"),
    ],
)
def test_unsafe_archives_are_refused(tmp_path, entries, links, message):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(make_tar(entries, links))
    with pytest.raises(DataError, match=message):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_fetch_downloads_extracts_once_and_reuses(server, tmp_path, monkeypatch, mini_set):
    handler, base = server
    body = real_archive(mini_set)
    handler.files["/speech_commands_v0.02.tar.gz"] = body
    monkeypatch.setitem(
        download_module.ARCHIVES, "v0.02",
        download_module.Archive(f"{base}/speech_commands_v0.02.tar.gz", len(body), hashlib.sha256(body).hexdigest(), "speech_commands_v0.02"),
    )
    folder = fetch("v0.02", tmp_path, io.StringIO())
    assert (folder / "yes" / "a.wav").read_bytes() == sorted((mini_set / "yes").iterdir())[0].read_bytes()
    assert data.list_words(folder).keys() == {"yes", "no"}
    assert fetch("v0.02", tmp_path, io.StringIO()) == folder
    assert len(handler.requests) == 1  # the second call used the cache
