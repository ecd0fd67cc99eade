"""Files and downloads of superpos.core: atomic writes (mode, failures, SIGKILL), checksums, a local HTTP server."""
import hashlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from superpos.core import (ConfigError, DownloadError, MissingFileError, atomic_write, clean_stale_parts, download,
                           output_dir, sha256sum, stale_parts, verify_file)

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = bytes(range(256)) * 40   # 10240 bytes


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_atomic_write_keeps_the_umask_mode_and_an_existing_mode(tmp_path):
    new = atomic_write(tmp_path / "run.json", lambda f: f.write("{}"), mode="w")
    assert new.stat().st_mode & 0o777 == 0o666 & ~_umask()   # what open() would give, not 0600
    os.chmod(new, 0o640)
    atomic_write(new, lambda f: f.write("{}"), mode="w")
    assert new.stat().st_mode & 0o777 == 0o640


def test_atomic_write_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "config.yaml"
    atomic_write(target, lambda f: f.write(b"old"))

    def fail(f):
        f.write(b"new, half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
    with pytest.raises(ConfigError, match="mode must be 'w' or 'wb'"):
        atomic_write(target, lambda f: None, mode="a")
    with pytest.raises(ConfigError, match="is a folder"):
        atomic_write(tmp_path, lambda f: None)


def test_sigkill_during_atomic_write_leaves_a_recognised_part_that_the_next_write_removes(tmp_path):
    target = tmp_path / "checkpoint.pt"
    atomic_write(target, lambda f: f.write(b"complete"))
    script = ("import sys, time\nfrom superpos.core import atomic_write\n"
              "def slow(f):\n    f.write(b'partial' * 1000)\n    f.flush()\n    print('writing', flush=True)\n    time.sleep(60)\n"
              f"atomic_write({str(target)!r}, slow)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout.readline().strip() == b"writing"
    assert stale_parts(target) == []            # a live writer's temporary file is never stale
    child.send_signal(signal.SIGKILL)
    child.wait()
    parts = stale_parts(target)
    assert len(parts) == 1 and parts[0].name.startswith(".checkpoint.pt.") and parts[0].suffix == ".part"
    assert target.read_bytes() == b"complete"   # nothing complete was lost
    atomic_write(target, lambda f: f.write(b"next"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    assert clean_stale_parts(target) == []


def test_output_dir_that_is_a_file_is_a_config_error(tmp_path):
    (tmp_path / "results").write_text("")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        output_dir(tmp_path / "results", "x")


class _Handler(http.server.BaseHTTPRequestHandler):
    """/good: the payload; /short: promises more bytes than it sends; /stall: headers, then nothing."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/missing":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.path.startswith("/good"):
            self.wfile.write(PAYLOAD)
        elif self.path == "/short":
            self.wfile.write(PAYLOAD[:1000])
        elif self.path == "/stall":
            self.wfile.flush()
            time.sleep(3)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_first_download_records_its_hash_and_later_calls_check_it(server, tmp_path):
    path = download(f"{server}/good", tmp_path / "data.bin", size=len(PAYLOAD), retries=1)
    record = tmp_path / "data.bin.sha256"
    assert path.read_bytes() == PAYLOAD and record.read_text().strip() == hashlib.sha256(PAYLOAD).hexdigest()
    assert download(f"{server}/good", path) == path            # cached and matching
    path.write_bytes(PAYLOAD[::-1])                             # the cache was changed afterwards
    with pytest.raises(DownloadError, match="does not match what was recorded"):
        download(f"{server}/good", path)
    path.unlink()
    assert download(f"{server}/good", path).read_bytes() == PAYLOAD   # the record is checked on re-download


def test_a_file_placed_by_hand_gets_its_hash_recorded(tmp_path):
    path = tmp_path / "by_hand.csv"
    path.write_bytes(b"a,b\n1,2\n")
    download("http://127.0.0.1:9/never-contacted", path, retries=1)
    assert (tmp_path / "by_hand.csv.sha256").read_text().strip() == sha256sum(path)
    with pytest.raises(DownloadError, match="expected 3"):
        download("http://127.0.0.1:9/never-contacted", path, size=3)


def test_truncated_stalled_and_wrong_downloads_leave_nothing(server, tmp_path):
    with pytest.raises(DownloadError, match="after 2 attempts"):
        download(f"{server}/short", tmp_path / "short.bin", retries=2, timeout=5)
    start = time.perf_counter()
    with pytest.raises(DownloadError, match="could not download"):
        download(f"{server}/stall", tmp_path / "stall.bin", retries=1, timeout=0.5)
    assert time.perf_counter() - start < 2.5                    # the time-out reaches the read
    with pytest.raises(DownloadError, match="corrupt"):
        download(f"{server}/good", tmp_path / "pinned.bin", sha256="0" * 64, retries=1)
    with pytest.raises(DownloadError, match="could not download"):
        download(f"{server}/missing", tmp_path / "missing.bin", retries=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == []     # no file, no record, no temporary


def test_pinned_checksum_and_verify_file(server, tmp_path):
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    path = download(f"{server}/good", tmp_path / "pinned.bin", sha256=digest.upper(), retries=1)
    assert not (tmp_path / "pinned.bin.sha256").exists()        # a published hash needs no record
    assert verify_file(path, sha256=digest, size=len(PAYLOAD)) == path
    with pytest.raises(DownloadError, match="has 10240 bytes, expected 10"):
        verify_file(path, size=10)
    with pytest.raises(MissingFileError, match="does not exist"):
        verify_file(tmp_path / "none.pkl", sha256=digest)
    for bad, message in ((dict(sha256="xyz"), "64 hexadecimal"), (dict(size=-1), "non-negative"),
                         (dict(retries=0), "retries must be"), (dict(timeout=0), "timeout must be")):
        with pytest.raises(ConfigError, match=message):
            download(f"{server}/good", tmp_path / "x.bin", **bad)
    with pytest.raises(ConfigError, match="http"):
        download("not-a-url", tmp_path / "y.bin")


def test_file_urls_work_offline(tmp_path):
    source = tmp_path / "remote.bin"
    source.write_bytes(PAYLOAD)
    got = download(source.as_uri(), tmp_path / "cache" / "remote.bin")
    assert got.read_bytes() == PAYLOAD
