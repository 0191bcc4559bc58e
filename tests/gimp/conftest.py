"""Fixtures of the real-GIMP tests: the GIMP versions, and GIMP sessions stopped at the end.

Every test here is marked `gimp` by tests/conftest.py.
"""

from __future__ import annotations

import pytest

from gimp_runner import VERSION_IDS, VERSIONS, GimpSession, new_session


@pytest.fixture(scope="module", params=VERSIONS, ids=VERSION_IDS)
def gimp_version(request) -> str:
    """Each GIMP version in turn ("3.0", "3.2"): a module's tests run for one, then for the next."""
    return request.param


@pytest.fixture(scope="module")
def gimp_session(tmp_path_factory):
    """gimp_session(version, name="gimp") -> GimpSession: a session for GIMP `version` whose work folder
    (profile, runtime, home, tmp, and whatever the test puts there) is a fresh temporary folder named
    after `name` and the version. Skipped, or failed in CI, where GIMP cannot run (gimp_runner.new_session).
    Whatever each session started that still runs (the local server, say) is stopped when the module ends."""
    sessions: list[GimpSession] = []

    def start(version: str, name: str = "gimp") -> GimpSession:
        session = new_session(version, tmp_path_factory.mktemp(f"{name}-{version}-"))
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.stop()
