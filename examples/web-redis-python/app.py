"""A tiny HTTP app that counts its visits in redis, using only the standard library."""
import os
import socket
from http.server import BaseHTTPRequestHandler, HTTPServer

REDIS = (os.environ.get("REDIS_HOST", "redis"), 6379)


def incr(key: str) -> int:
    # RESP by hand keeps the example free of third-party packages.
    with socket.create_connection(REDIS, timeout=2) as s:
        s.sendall(f"*2\r\n$4\r\nINCR\r\n${len(key)}\r\n{key}\r\n".encode())
        return int(s.recv(64).decode().strip().lstrip(":"))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from devenv, visit {incr('visits')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler).serve_forever()
