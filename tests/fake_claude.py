"""Plays Claude Code's part for keyswitch's integration tests, as docs/facts/claude-code-facts.md measured it:
the helper and the hook run through `/bin/sh -c` from this process (so this process is P), the
hook with its JSON on stdin and CLAUDE_PID=P in its environment.

Reads one command a line on stdin and answers one JSON line on stdout:
  {"op": "helper", "command": "...", "env": {...}}            -> {"stdout": ..., "stderr": ..., "code": n}
  {"op": "hook", "command": "...", "input": "...", "env": {...}} -> the same
  {"op": "exit"}
"""
import json
import os
import subprocess
import sys

for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "exit":
        break
    env = dict(os.environ)
    env.update(request.get("env", {}))
    if request["op"] == "hook":
        env["CLAUDE_PID"] = str(os.getpid())
        env.setdefault("CLAUDE_CODE_SESSION_ID", request.get("session", "test-session"))
    done = subprocess.run(
        ["/bin/sh", "-c", request["command"]],
        input=request.get("input", "").encode(),
        capture_output=True,
        env=env,
        timeout=30,
    )
    print(json.dumps({
        "stdout": done.stdout.decode(errors="replace"),
        "stderr": done.stderr.decode(errors="replace"),
        "code": done.returncode,
    }), flush=True)
