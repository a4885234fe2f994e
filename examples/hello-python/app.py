"""The bundled example app: a tiny web service using only Python's standard library.

It serves its greeting and release on /, answers /healthz for Drover's health checks, and
shuts down cleanly on SIGTERM so in-flight requests finish.
"""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def release_name(raw):
    """Drover passes the release number; show it as Drover's CLI does, e.g. v3."""
    return "v" + raw if raw.isdigit() else raw


def page():
    return {
        "greeting": os.environ.get("GREETING", "hello"),
        "app": os.environ.get("DROVER_APP", "hello"),
        "release": release_name(os.environ.get("DROVER_RELEASE", "dev")),
        "instance": os.environ.get("DROVER_INSTANCE", "local"),
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, "text/plain", b"ok\n")
        elif self.path == "/":
            body = json.dumps(page()).encode() + b"\n"
            self.reply(200, "application/json", body)
        else:
            self.reply(404, "text/plain", b"not found\n")

    def reply(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        if self.path == "/healthz":
            return
        sys.stdout.write("%s %s\n" % (self.address_string(), fmt % args))
        sys.stdout.flush()


def main():
    port = int(os.environ.get("PORT", "5000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True

    def stop(signum, frame):
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    print("listening on 127.0.0.1:%d release %s" % (port, page()["release"]), flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
