#!/usr/bin/env python3
"""Sample webhook receiver for event-relay (python3 standard library only).

Accepts any method on any path, gunzips bodies that start with the gzip
magic bytes (1f 8b), prints one line per request to stdout:

    POST /hooks events=CardView,SignUpSuccess count=2

and answers with the configured status and body {"status":"Ok"}.  It doubles
as a PostHog stand-in: the relay's PostHog target POSTs to /batch/ (and
/capture/, /i/v0/e/), which this server accepts like any other path.

    GET /stats   -> JSON counts: requests, events, requests and events per path,
                    per event name, per status
    GET /healthz -> 200 {"status":"Ok"} (for container health checks)

Usage:
    python3 scripts/receiver.py --port 8080 [--host 0.0.0.0] [--status 200] [--quiet]

--status may be given as a comma-separated sequence (e.g. "503,503,200") to
answer successive requests with those statuses; the last one repeats.  That
makes retry behaviour easy to watch by hand.
"""

import argparse
import gzip
import json
import signal
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GZIP_MAGIC = b"\x1f\x8b"


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.events = 0
        self.by_path = Counter()
        self.events_by_path = Counter()
        self.by_event = Counter()
        self.by_status = Counter()
        self.bad_bodies = 0

    def record(self, path, names, status, bad_body):
        with self.lock:
            self.requests += 1
            self.events += len(names)
            self.by_path[path] += 1
            self.events_by_path[path] += len(names)
            self.by_status[str(status)] += 1
            for name in names:
                self.by_event[name] += 1
            if bad_body:
                self.bad_bodies += 1

    def snapshot(self):
        with self.lock:
            return {
                "requests": self.requests,
                "events": self.events,
                "bad_bodies": self.bad_bodies,
                "by_path": dict(self.by_path),
                "events_by_path": dict(self.events_by_path),
                "by_event": dict(self.by_event),
                "by_status": dict(self.by_status),
            }


def event_names(doc):
    """Event names in a JSON body: an object's `event`, each element of an
    array, or a PostHog batch ({"batch": [...]}) ."""
    if isinstance(doc, list):
        items = doc
    elif isinstance(doc, dict) and isinstance(doc.get("batch"), list):
        items = doc["batch"]
    else:
        items = [doc]
    names = []
    for item in items:
        if isinstance(item, dict):
            name = item.get("event")
            names.append(name if isinstance(name, str) else "?")
        else:
            names.append("?")
    return names


class StatusPlan:
    """Successive response statuses; the last one repeats forever."""

    def __init__(self, spec):
        self.statuses = [int(s) for s in str(spec).split(",") if s.strip()]
        if not self.statuses:
            raise ValueError("empty --status")
        self.lock = threading.Lock()
        self.index = 0

    def next(self):
        with self.lock:
            status = self.statuses[min(self.index, len(self.statuses) - 1)]
            self.index += 1
            return status


def make_handler(stats, plan, quiet, path_plans=None):
    path_plans = path_plans or {}

    class Handler(BaseHTTPRequestHandler):
        server_version = "event-relay-receiver/1"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # silence default stderr access log
            pass

        def _send_json(self, status, doc):
            body = json.dumps(doc, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _read_body(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            if raw[:2] == GZIP_MAGIC:
                raw = gzip.decompress(raw)
            return raw

        def _handle(self):
            path = self.path.split("?", 1)[0]
            if self.command == "GET" and path == "/stats":
                self._send_json(200, stats.snapshot())
                return
            if self.command == "GET" and path == "/healthz":
                self._send_json(200, {"status": "Ok"})
                return
            bad_body = False
            names = []
            try:
                raw = self._read_body()
                if raw.strip():
                    names = event_names(json.loads(raw))
            except (OSError, EOFError, ValueError, UnicodeDecodeError):
                bad_body = True
            # The first --path-status whose path starts the request's path.
            status = next((p for k, p in path_plans.items() if path.startswith(k)), plan).next()
            stats.record(path, names, status, bad_body)
            if not quiet:
                shown = ",".join(names) if names else "-"
                extra = " body=unparseable" if bad_body else ""
                print(
                    f"{self.command} {self.path} events={shown} count={len(names)} "
                    f"-> {status}{extra}",
                    flush=True,
                )
            self._send_json(status, {"status": "Ok"})

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        def do_OPTIONS(self):
            self._handle()

    return Handler


def main(argv=None):
    parser = argparse.ArgumentParser(description="Sample webhook receiver / PostHog stand-in")
    parser.add_argument("--host", default="0.0.0.0", help="bind address (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 = any)")
    parser.add_argument("--status", default="200",
                        help="response status, or a comma-separated sequence (default 200)")
    parser.add_argument("--path-status", action="append", default=[], metavar="PATH=STATUSES",
                        help="statuses for the paths starting with PATH, as --status (e.g. /crm=503,200); repeatable")
    parser.add_argument("--quiet", action="store_true", help="do not print a line per request")
    args = parser.parse_args(argv)

    stats = Stats()
    plan = StatusPlan(args.status)
    path_plans = {}
    for spec in args.path_status:
        path, _, statuses = spec.partition("=")
        path_plans[path] = StatusPlan(statuses)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(stats, plan, args.quiet, path_plans))
    server.daemon_threads = True
    host, port = server.server_address[:2]
    # As PID 1 in a container SIGTERM has no default action: stop cleanly on it.
    # server.shutdown() blocks until serve_forever() returns, so call it from a thread.
    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"receiver listening on http://{host}:{port} (status {args.status})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print(json.dumps(stats.snapshot()), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
