"""The embedded PostgreSQL starts without pgserver's internal chatter on every `leximind` command."""
from __future__ import annotations

import logging
import sys
import types
import warnings

from leximind.services import start_embedded_postgres


def test_embedded_postgres_keeps_pgserver_info_and_the_runtime_dir_warning_quiet(tmp_path, monkeypatch, caplog):
    class FakeServer:
        def get_uri(self) -> str:
            return "postgresql://postgres@/postgres?host=" + str(tmp_path)

    def get_server(pgdata, cleanup_mode):
        logging.getLogger("pgserver").info("a postgres server is already running: postmaster_info=...")
        logging.getLogger("pgserver").warning("the server log says something went wrong")
        warnings.warn("XDG_RUNTIME_DIR is not set, falling back to /tmp/runtime-0", UserWarning, stacklevel=2)
        return FakeServer()

    monkeypatch.setitem(sys.modules, "pgserver", types.SimpleNamespace(get_server=get_server))
    monkeypatch.setattr(logging.getLogger("pgserver"), "level", logging.NOTSET)
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert start_embedded_postgres(tmp_path).startswith("postgresql://")
    assert [r.getMessage() for r in caplog.records if r.name == "pgserver"] == [
        "the server log says something went wrong"]
    assert not shown
