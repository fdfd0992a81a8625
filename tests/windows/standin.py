"""A Messages API stand-in for scripts/test-windows.sh's proxy-mode checks, on loopback.

Answers 429 with a long retry-after to the key given as argv[2] (a spent budget), and 200 naming
the key to any other. Prints its port, then appends each request's key to the file in argv[1].
"""
import http.server
import json
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        key = self.headers.get("x-api-key", "")
        with open(sys.argv[1], "a") as seen:
            seen.write(key + "\n")
        if key == sys.argv[2]:
            status, extra = 429, [("retry-after", "3600")]
            body = {"type": "error", "error": {"type": "rate_limit_error", "message": "spent"}}
        else:
            status, extra = 200, []
            body = {"type": "message", "content": [{"type": "text", "text": "from " + key}]}
        out = json.dumps(body).encode()
        self.send_response(status)
        for name, value in extra + [("content-type", "application/json"), ("content-length", str(len(out)))]:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
