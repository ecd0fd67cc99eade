"""A local HTTP server with byte-range support: offline tests (and the DANDI page's demo) of the streaming path.

Not part of the package. S3, which serves the DANDI assets, answers `Range: bytes=a-b` requests with
206 Partial Content; this server does the same for one local file, so remfile and h5py read it as
they read a remote file. `serve_faulty` adds the faults of a bad network: a server that accepts
requests and never answers (`stall_after`), and one that garbles the bytes of its range answers
(`corrupt`).
"""
import http.server
import re
import threading
from contextlib import contextmanager
from pathlib import Path


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """GET with an optional `Range: bytes=start-[stop]` header, from the server's `blob`."""

    def do_GET(self):
        server = self.server
        with server.lock:
            server.requests += 1
            number = server.requests
        if server.stall_after is not None and number > server.stall_after:
            server.released.wait()  # accept the request, never answer (until the server shuts down)
            return
        blob = server.blob
        match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        start, stop = (int(match.group(1)), int(match.group(2) or len(blob) - 1)) if match else (0, len(blob) - 1)
        body = blob[start:stop + 1]
        if match and server.corrupt > 0:
            with server.lock:
                server.corrupt -= 1
                server.corrupted += 1
            body = bytes(b ^ 0x5A for b in body)  # same length, wrong bytes
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
def serve_faulty(path: str | Path, *, stall_after: int | None = None, corrupt: int = 0):
    """Serve one file like `serve_file_locally`; yields (url, server).

    `stall_after`: answer that many requests, then accept every later one and never answer; `corrupt`: garble
    the bytes of that many range answers (set `server.corrupt` later to change it). `server.requests` counts
    the requests, `server.corrupted` the garbled answers."""
    server = _QuietServer(("127.0.0.1", 0), _RangeHandler)
    server.daemon_threads = False  # server_close joins the handlers: none is left running at interpreter exit
    server.blob = Path(path).read_bytes()
    server.lock, server.released = threading.Lock(), threading.Event()
    server.requests, server.stall_after, server.corrupt, server.corrupted = 0, stall_after, corrupt, 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{Path(path).name}", server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()


@contextmanager
def serve_file_locally(path: str | Path):
    """Serve one file over HTTP on localhost with byte-range support; yields its URL."""
    with serve_faulty(path) as (url, _):
        yield url
