"""A local HTTP server with byte-range support: offline tests (and the DANDI page's demo) of the streaming path.

Not part of the package. S3, which serves the DANDI assets, answers `Range: bytes=a-b` requests with
206 Partial Content; this server does the same for one local file, so remfile and h5py read it as
they read a remote file.
"""
import http.server
import re
import threading
from contextlib import contextmanager
from pathlib import Path


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """GET with an optional `Range: bytes=start-[stop]` header, from the server's `blob`."""

    def do_GET(self):
        blob = self.server.blob
        match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        start, stop = (int(match.group(1)), int(match.group(2) or len(blob) - 1)) if match else (0, len(blob) - 1)
        body = blob[start:stop + 1]
        try:
            self.send_response(206 if match else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client closed the connection early (e.g. it read only a header block)

    def log_message(self, *args):
        """No request log on stderr."""


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """Clients that hang up early are normal for a range-reading client: no traceback."""


@contextmanager
def serve_file_locally(path: str | Path):
    """Serve one file over HTTP on localhost with byte-range support; yields its URL."""
    server = _QuietServer(("127.0.0.1", 0), _RangeHandler)
    server.blob = Path(path).read_bytes()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{Path(path).name}"
    finally:
        server.shutdown()
        server.server_close()
