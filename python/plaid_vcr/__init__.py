"""plaid-vcr from Python: find the binary, run it as a server, name sessions.

`pip install plaid-vcr` puts the `plaid-vcr` executable on PATH and this package beside it. The
pytest plugin (`plaid_vcr.pytest_plugin`) is built on the `PlaidVcr` class here; scripts can use
it directly:

    with PlaidVcr.start(["replay", "--cassette", "cassettes/app"]) as vcr:
        configuration = plaid.Configuration(host=vcr.session_url("my-test"))
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["PlaidVcr", "PlaidVcrError", "find_binary", "session_name"]

BINARY = "plaid-vcr.exe" if sys.platform == "win32" else "plaid-vcr"


class PlaidVcrError(RuntimeError):
    """plaid-vcr could not be found, did not start, or answered something unexpected."""


def find_binary() -> str:
    """The plaid-vcr executable: $PLAID_VCR_BINARY, the one this package was installed with, or PATH."""
    explicit = os.environ.get("PLAID_VCR_BINARY")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise PlaidVcrError(f"PLAID_VCR_BINARY={explicit} is not an executable file")
        return explicit
    candidates = [Path(sysconfig.get_path("scripts")) / BINARY]
    user_scheme = f"{os.name}_user"
    if user_scheme in sysconfig.get_scheme_names():
        candidates.append(Path(sysconfig.get_path("scripts", user_scheme)) / BINARY)
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(BINARY)
    if found:
        return found
    raise PlaidVcrError(
        "cannot find the plaid-vcr executable; reinstall the package (pip install plaid-vcr) "
        "or set PLAID_VCR_BINARY"
    )


def session_name(test_id: str) -> str:
    """A test id (a pytest node id, a jest test name) as a session name.

    `::` becomes `/`, every other character outside `A-Za-z0-9._-/` becomes `_`, and an empty,
    `.` or `..` part becomes `_` (the rules of docs/sessions.md); at most 200 characters.
    """
    name = re.sub(r"[^A-Za-z0-9._/-]", "_", test_id.replace("::", "/"))
    name = "/".join("_" if part in ("", ".", "..") else part for part in name.split("/"))
    if len(name) > 200:
        # Keep the end (the test's own name) and stay unique with a hash of the whole.
        digest = hashlib.sha256(test_id.encode()).hexdigest()[:12]
        name = f"{digest}/{name[-180:].lstrip('/')}"
        name = "/".join("_" if part in ("", ".", "..") else part for part in name.split("/"))
    return name


class PlaidVcr:
    """A running plaid-vcr server: its base URL, its sessions, and how to stop it."""

    def __init__(self, process: subprocess.Popen, origin: str, stderr_path: Path):
        self._process = process
        self.origin = origin
        self._stderr_path = stderr_path
        self.summary = ""

    @classmethod
    def start(cls, args: list[str], binary: str | None = None, cwd: str | None = None) -> PlaidVcr:
        """Starts `plaid-vcr ARGS --listen 127.0.0.1:0` and waits for its listening line."""
        binary = binary or find_binary()
        stderr_file = tempfile.NamedTemporaryFile(prefix="plaid-vcr-", suffix=".log", delete=False)
        stderr_path = Path(stderr_file.name)
        process = subprocess.Popen(
            [binary, *args, "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            cwd=cwd,
            text=True,
        )
        stderr_file.close()
        assert process.stdout is not None  # stdout=PIPE above
        line = process.stdout.readline()
        match = re.search(r"http://\S+", line)
        if not match:
            process.wait(timeout=30)
            raise PlaidVcrError(f"plaid-vcr did not start: {stderr_path.read_text().strip() or line}")
        return cls(process, match.group(0), stderr_path)

    @property
    def url(self) -> str:
        """The base URL for a Plaid client in the default session."""
        return f"{self.origin}/plaid-compatible"

    def session_url(self, name: str) -> str:
        """The base URL that puts a Plaid client's requests in session `name`."""
        return f"{self.origin}/sessions/{name}/plaid-compatible"

    def _api(self, method: str, path: str, body: dict | None = None) -> dict | None:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.origin}/plaid-vcr/sessions{path}",
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise PlaidVcrError(f"plaid-vcr answered {e.code}: {e.read().decode(errors='replace')}") from e

    def report(self, session: str | None = None) -> dict | None:
        """A session's report (None if no request named it), or the list of all sessions."""
        return self._api("GET", f"/{session}" if session else "")

    def add_fault(
        self,
        session: str,
        error_code: str,
        endpoint: str | None = None,
        after: int = 0,
        times: int | None = 1,
    ) -> dict | None:
        """Adds a fault rule to a session (see docs/failures.md): `error_code` (a Plaid error
        code, or delay=MS, reset, truncate, timeout) for `endpoint` (any if None), after `after`
        matching requests, `times` times (None: until removed). Returns the session's rules."""
        rule = {"error_code": error_code, "endpoint": endpoint, "after": after, "times": times}
        return self._api("POST", f"/{session}/faults", rule)

    def clear_faults(self, session: str) -> dict | None:
        """Removes a session's fault rules (and what ITEM_LOGIN_REQUIRED stuck to)."""
        return self._api("DELETE", f"/{session}/faults")

    def end_session(self, session: str) -> dict | None:
        """Ends a session (its final report, or None): the name starts again at step 1."""
        return self._api("DELETE", f"/{session}")

    def stop(self, timeout: float = 60) -> int:
        """Stops it with SIGTERM; returns its exit code and keeps its summary in `summary`."""
        if self._process.poll() is None:
            if sys.platform == "win32":
                self._process.terminate()
            else:
                self._process.send_signal(signal.SIGTERM)
        try:
            code = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        text = self._stderr_path.read_text(errors="replace")
        start = text.find("plaid-vcr summary")
        self.summary = text[start:].strip() if start >= 0 else text.strip()
        self._stderr_path.unlink(missing_ok=True)
        return code

    def __enter__(self) -> PlaidVcr:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
