"""The pytest plugin: one plaid-vcr for the whole run, a session per test.

Registered through the `pytest11` entry point, so installing the package is enough:

    def test_identity(plaid_vcr_url):
        api = plaid_api.PlaidApi(plaid.ApiClient(plaid.Configuration(host=plaid_vcr_url)))
        ...

- `plaid_vcr_url`: the base URL for the current test, in its own session (`/sessions/<escaped
  node id>/plaid-compatible`), ready for `plaid.Configuration(host=...)`.
- `plaid_vcr` (session-scoped): the running proxy: `.url`, `.session_url(name)`, `.report()`.
- `plaid_vcr_fault`: fault rules for the current test's session (Plaid's errors on demand).
- In replay, a test whose session had a miss fails with plaid-vcr's explanation of it.
- Under pytest-xdist (`-n 4`) one plaid-vcr serves every worker: the controller starts it and
  hands its address to the workers, so one process owns the cassette and the store, in replay
  and in record alike. It is stopped with SIGTERM at the end and its summary shown.
"""

from __future__ import annotations

import shlex

import pytest

from plaid_vcr import PlaidVcr, PlaidVcrError, session_name

MODES = {
    "replay": ["replay"],
    "record": ["record"],
    "record-missing": ["replay", "--record-missing"],
}
ORIGIN = "plaid_vcr_origin"
FIXTURE = "plaid_vcr_url"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("plaid-vcr", "plaid-vcr: record and replay the Plaid API")
    group.addoption(
        "--plaid-vcr-mode",
        choices=sorted(MODES),
        default=None,
        help="replay (default: offline, from the cassette), record (from Plaid), or record-missing",
    )
    group.addoption("--plaid-vcr-cassette", default=None, metavar="DIR", help="the cassette directory")
    group.addoption(
        "--plaid-vcr-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an argument for the plaid-vcr binary (repeatable), e.g. --plaid-vcr-arg=--strict",
    )
    parser.addini("plaid_vcr_mode", "replay, record or record-missing", default="replay")
    parser.addini("plaid_vcr_cassette", "the cassette directory", default="cassettes/plaid-vcr")
    parser.addini("plaid_vcr_args", "arguments for the plaid-vcr binary", type="args", default=[])


class _Run:
    """This pytest run's plaid-vcr: started on first use by the process that owns it."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.vcr: PlaidVcr | None = None
        self.exit_code: int | None = None

    def args(self) -> list[str]:
        config = self.config
        mode = config.getoption("plaid_vcr_mode") or config.getini("plaid_vcr_mode")
        if mode not in MODES:
            raise pytest.UsageError(f"plaid_vcr_mode must be one of {', '.join(sorted(MODES))}, not {mode!r}")
        cassette = config.getoption("plaid_vcr_cassette") or config.getini("plaid_vcr_cassette")
        extra = list(config.getini("plaid_vcr_args")) + list(config.getoption("plaid_vcr_arg"))
        return [*MODES[mode], "--cassette", str(config.rootpath / cassette), *extra]

    def mode(self) -> str:
        return self.config.getoption("plaid_vcr_mode") or self.config.getini("plaid_vcr_mode")

    def started(self) -> PlaidVcr:
        if self.vcr is None:
            try:
                self.vcr = PlaidVcr.start(self.args(), cwd=str(self.config.rootpath))
            except PlaidVcrError as e:
                raise pytest.UsageError(f"plaid-vcr: {e} (arguments: {shlex.join(self.args())})") from e
        return self.vcr

    def stop(self) -> None:
        if self.vcr is not None and self.exit_code is None:
            self.exit_code = self.vcr.stop()


class _Remote(PlaidVcr):
    """The controller's plaid-vcr, seen from an xdist worker: its address only."""

    def __init__(self, origin: str):  # noqa: D107 - no process of its own
        self.origin = origin
        self.summary = ""

    def stop(self, timeout: float = 60) -> int:
        return 0


_RUN = pytest.StashKey[_Run]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RUN] = _Run(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist, in the controller: every worker gets the one plaid-vcr's address."""
    node.workerinput[ORIGIN] = node.config.stash[_RUN].started().origin


def _vcr(config: pytest.Config) -> PlaidVcr:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and ORIGIN in workerinput:
        return _Remote(workerinput[ORIGIN])
    return config.stash[_RUN].started()


@pytest.fixture(scope="session")
def plaid_vcr(pytestconfig: pytest.Config) -> PlaidVcr:
    """The running plaid-vcr: `.url`, `.session_url(name)`, `.report()`."""
    return _vcr(pytestconfig)


@pytest.fixture
def plaid_vcr_url(request: pytest.FixtureRequest, plaid_vcr: PlaidVcr) -> str:
    """The base URL for this test, in its own session (`/sessions/<node id>/plaid-compatible`)."""
    name = session_name(request.node.nodeid)
    # A retried test starts again at step 1 of its sequences.
    plaid_vcr.end_session(name)
    return plaid_vcr.session_url(name)


class Faults:
    """Fault rules for the current test's session (the `plaid_vcr_fault` fixture)."""

    def __init__(self, vcr: PlaidVcr, session: str):
        self.vcr = vcr
        self.session = session

    def __call__(self, error_code: str, endpoint: str | None = None, after: int = 0, times: int | None = 1):
        """Fails the test's requests as Plaid would: see docs/failures.md."""
        return self.vcr.add_fault(self.session, error_code, endpoint=endpoint, after=after, times=times)

    def clear(self):
        """Removes the rules (the user went through update mode, the outage is over)."""
        return self.vcr.clear_faults(self.session)


@pytest.fixture
def plaid_vcr_fault(request: pytest.FixtureRequest, plaid_vcr: PlaidVcr, plaid_vcr_url: str) -> Faults:
    """Adds fault rules to this test's session: `plaid_vcr_fault("ITEM_LOGIN_REQUIRED",
    endpoint="/accounts/get")`, `plaid_vcr_fault.clear()`."""
    return Faults(plaid_vcr, session_name(request.node.nodeid))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or FIXTURE not in getattr(item, "fixturenames", ()):
        return
    run = item.config.stash[_RUN]
    if run.mode() != "replay":
        return
    session = session_name(item.nodeid)
    found = _vcr(item.config).report(session) or {}
    misses = found.get("misses", [])
    if not misses:
        return
    lines = [f"plaid-vcr: {len(misses)} request(s) of this test had no recording (session {session}):"]
    for miss in misses:
        why = miss.get("explanation", "no recording")
        lines.append(f"  {miss['endpoint']} (key {miss['key'][:16]}): {why}")
    lines.append("record them with --plaid-vcr-mode=record-missing")
    text = "\n".join(lines)
    if report.passed:
        report.outcome = "failed"
        report.longrepr = text
    else:
        report.sections.append(("plaid-vcr misses", text))


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    run = config.stash.get(_RUN, None)
    if run is None or run.vcr is None:
        return
    run.stop()
    terminalreporter.write_sep("-", "plaid-vcr")
    for line in run.vcr.summary.splitlines():
        terminalreporter.write_line(line)
    if run.exit_code:
        terminalreporter.write_line(f"plaid-vcr exited with {run.exit_code}")


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(_RUN, None)
    if run is not None:
        run.stop()
