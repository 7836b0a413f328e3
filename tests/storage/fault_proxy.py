#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""An HTTP proxy in front of an S3-compatible server that fails on command, for the S3 tests.

    fault_proxy.py --port P --upstream http://127.0.0.1:M --ready FILE

The test steers it with GET /__fault__?...:
    error=N        the next N requests get a 500 InternalError (not forwarded)
    drop=N         the next N requests get their connection closed without an answer
    down_after=K   after K more part uploads (PUT ...partNumber=...), the "server" dies: every
                   request gets its connection closed until up=1
    up=1           the server is back
    key=AKID       from now on, requests signed with another access key id get 403
                   InvalidAccessKeyId (as AWS answers; moto does not check keys)
    reset=1        no faults
Everything else goes to the upstream server unchanged.
"""
import argparse
import http.client
import http.server
import re
import threading
import urllib.parse

STATE = {"error": 0, "drop": 0, "down_after": -1, "down": False, "key": ""}
LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None

    def log_message(self, *args):  # quiet
        pass

    def _control(self, query):
        q = urllib.parse.parse_qs(query, keep_blank_values=True)
        with LOCK:
            if "reset" in q:
                STATE.update(error=0, drop=0, down_after=-1, down=False, key="")
            for name in ("error", "drop", "down_after"):
                if name in q:
                    STATE[name] = int(q[name][0])
            if "up" in q:
                STATE["down"] = False
                STATE["down_after"] = -1
            if "key" in q:
                STATE["key"] = q["key"][0]
        self._answer(200, b"ok", "text/plain")

    def _answer(self, status, body, ctype="application/xml"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def _handle(self):
        parsed = urllib.parse.urlsplit(self.path)
        if parsed.path == "/__fault__":
            return self._control(parsed.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        is_part = self.command == "PUT" and "partNumber=" in parsed.query
        with LOCK:
            if STATE["down"]:
                action = "drop"
            elif STATE["error"] > 0:
                STATE["error"] -= 1
                action = "error"
            elif STATE["drop"] > 0:
                STATE["drop"] -= 1
                action = "drop"
            else:
                action = "forward"
                if is_part and STATE["down_after"] >= 0:
                    if STATE["down_after"] == 0:
                        STATE["down"] = True
                        action = "drop"
                    else:
                        STATE["down_after"] -= 1
            key = STATE["key"]
        if action == "drop":
            return self._drop()
        if action == "error":
            return self._answer(
                500, b"<Error><Code>InternalError</Code><Message>injected</Message></Error>")
        if key:
            m = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
            if not m or m.group(1) != key:
                return self._answer(
                    403, b"<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id"
                    b" you provided does not exist in our records.</Message></Error>")
        conn = http.client.HTTPConnection(self.upstream[0], self.upstream[1], timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        conn.request(self.command, self.path, body=body if body else None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "date",
                                 "server"):
                self.send_header(k, v)
        # A HEAD answer keeps the object's length; others carry what was read.
        if self.command == "HEAD":
            self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--ready", required=True)
    a = p.parse_args()
    u = urllib.parse.urlsplit(a.upstream)
    Handler.upstream = (u.hostname, u.port)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    with open(a.ready, "w") as f:
        f.write("ready\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
