"""Tests of superpos.brain.dandi offline: a fake DANDI client and a local HTTP range server (tests/http_range_server.py)."""
import hashlib

import numpy as np
import pytest

import superpos.brain.dandi as dandi
from http_range_server import serve_file_locally
from superpos.brain.dandi import AtomicDiskCache
from superpos.core import ConfigError, DownloadError, MissingFileError



class FakeAsset:
    def __init__(self, path, url):
        self.path, self.size, self.url = path, 1000, url

    def get_content_url(self, follow_redirects=1, strip_query=True):
        return self.url


class FakeClient:
    def __init__(self, assets, failures=0):
        self.assets, self.failures = assets, failures

    def get_dandiset(self, dandiset_id, version=None):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("connection reset by peer")
        return self

    def get_assets(self):
        return self.assets

    def get_asset_by_path(self, path):
        return next(a for a in self.assets if a.path == path)


def test_dandi_streaming_path_offline(files, sessions, tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERPOS_CACHE", str(tmp_path / "cache"))
    with serve_file_locally(files["neuropixels"]["path"]) as url:
        assets = [FakeAsset("sub-7/sub-7_ses-715093703.nwb", url),
                  FakeAsset("sub-7/sub-7_ses-715093703_probe-1_ecephys.nwb", url)]
        monkeypatch.setattr(dandi, "_dandi_client", lambda: FakeClient(assets))
        found = dandi.find_natural_scenes_sessions("21")
        assert list(found.session_id) == ["715093703"] and found.layout[0] == "neuropixels"
        ds = dandi.load_dandi_session("000021", 715093703, window=(0.0, 0.25))
        again = dandi.load_dandi_session("000021", "715093703", window=(0.0, 0.25))  # from the disk cache
    np.testing.assert_allclose(ds.responses.values, sessions["neuropixels"].responses.values)
    np.testing.assert_allclose(again.responses.values, ds.responses.values)
    assert ds.attrs["dandiset"] == "000021" and ds.attrs["source"] == url
    chunks = [p for p in (tmp_path / "cache" / "dandi").rglob("*") if p.is_file()]
    assert chunks and not [p for p in chunks if p.name.endswith(".part")]
    blob = files["neuropixels"]["path"].read_bytes()
    assert sum(p.stat().st_size for p in chunks) <= len(blob)  # whole chunks of the file, nothing extra
    for chunk in chunks:
        assert chunk.read_bytes() in blob


def test_disk_cache_never_holds_half_written_chunks(tmp_path):
    cache = AtomicDiskCache(str(tmp_path))
    cache.set("url|chunk0", b"complete")
    assert cache.get("url|chunk0") == b"complete"

    with pytest.raises(TypeError):  # the write fails after the file was opened
        cache.set("url|chunk1", "text, not bytes")
    assert cache.get("url|chunk1") is None
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [hashlib.sha1(b"url|chunk0").hexdigest()]


def test_dandi_errors_retry_and_explain(files, monkeypatch):
    monkeypatch.setattr(dandi.time, "sleep", lambda s: None)
    asset = FakeAsset("sub-1/sub-1_ses-42-StimB_behavior+image+ophys.nwb", "http://unused")
    flaky = FakeClient([asset], failures=2)
    monkeypatch.setattr(dandi, "_dandi_client", lambda: flaky)
    assert list(dandi.find_natural_scenes_sessions("000728", retries=3).session_id) == ["42"]
    down = FakeClient([asset], failures=100)
    monkeypatch.setattr(dandi, "_dandi_client", lambda: down)
    with pytest.raises(DownloadError, match="failed after 3 attempts .*check the network"):
        dandi.find_natural_scenes_sessions("000728", retries=3)
    monkeypatch.setattr(dandi, "_dandi_client", lambda: FakeClient([asset]))
    with pytest.raises(MissingFileError, match="no natural-scenes session '99'"):
        dandi.load_dandi_session("000728", 99)
    with pytest.raises(ConfigError, match="pass pattern="):
        dandi.find_natural_scenes_sessions("000999")

    class NotFoundError(Exception):
        pass

    class Gone(FakeClient):
        def get_dandiset(self, dandiset_id, version=None):
            raise NotFoundError("No such dandiset")

    monkeypatch.setattr(dandi, "_dandi_client", lambda: Gone([asset]))
    with pytest.raises(MissingFileError, match="not found on DANDI"):
        dandi.find_natural_scenes_sessions("000728")


def test_unreachable_url_gives_download_error(files, monkeypatch):
    monkeypatch.setattr(dandi.time, "sleep", lambda s: None)
    asset = FakeAsset("sub-1/sub-1_ses-42-StimB_behavior+image+ophys.nwb", "http://127.0.0.1:9/none.nwb")
    monkeypatch.setattr(dandi, "_dandi_client", lambda: FakeClient([asset]))
    monkeypatch.setattr(dandi.remfile, "File", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("refused")))
    with pytest.raises(DownloadError, match="streaming .*failed after 2 attempts"):
        dandi.load_dandi_session("000728", 42, retries=2)


def test_unreadable_remote_file_is_retried_then_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(dandi.time, "sleep", lambda s: None)
    monkeypatch.setenv("SUPERPOS_CACHE", str(tmp_path / "cache"))
    garbage = tmp_path / "garbage.nwb"
    garbage.write_bytes(b"not an hdf5 file" * 1000)
    with serve_file_locally(garbage) as url:
        asset = FakeAsset("sub-1/sub-1_ses-42-StimB_behavior+image+ophys.nwb", url)
        monkeypatch.setattr(dandi, "_dandi_client", lambda: FakeClient([asset]))
        with pytest.raises(DownloadError, match="failed after 2 attempts .*not a readable NWB"):
            dandi.load_dandi_session("000728", 42, retries=2)


def test_range_server_answers_ranges_and_is_silent_when_clients_hang_up(tmp_path, capfd):
    import socket
    import time
    import urllib.request
    big = tmp_path / "big.bin"  # larger than the socket buffers, so that a hung-up client breaks the write
    big.write_bytes(np.random.default_rng(0).bytes(5_000_000))
    blob = big.read_bytes()
    with serve_file_locally(big) as url:
        request = urllib.request.Request(url, headers={"Range": "bytes=10-19"})
        with urllib.request.urlopen(request) as response:
            assert response.status == 206 and response.read() == blob[10:20]
        host, port = url.split("/")[2].split(":")
        for _ in range(3):  # ask for the whole file, then hang up before reading it
            with socket.create_connection((host, int(port))) as client:
                client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
    assert capfd.readouterr().err == ""
