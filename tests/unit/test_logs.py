"""The logging configuration the server applies at start (plugin.logs):
dictConfig accepts it, and a line of ours and one of gunicorn's reach
stderr in the chosen format. A config dictConfig refuses stops the server
before it listens, and only a real server showed that before."""
from __future__ import annotations

import json
import logging
import logging.config

import pytest

from plugin import logs


@pytest.fixture
def restored():
    """Logging as it was: the test's dictConfig replaces the root's handlers."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("gunicorn.error", "gunicorn.access"):
        logging.getLogger(name).handlers[:] = []


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_servers_logging_config_is_taken_and_writes_to_stderr(fmt, capsys, restored):
    logging.config.dictConfig(logs.config_dict("info", fmt))
    logging.getLogger("pontoon.test").info("ours %s", 1)
    logging.getLogger("gunicorn.error").info("theirs")
    logging.getLogger("gunicorn.access").info("a request")  # below the access log's level
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    if fmt == "json":
        entries = [json.loads(line) for line in lines]
        assert [(e["logger"], e["msg"], e["level"]) for e in entries] == [
            ("pontoon.test", "ours 1", "info"), ("gunicorn.error", "theirs", "info")]
    else:
        assert lines[0].endswith("INFO pontoon.test: ours 1") and lines[1].endswith("INFO gunicorn.error: theirs")


def test_gunicorns_access_line_is_built_only_when_it_would_be_logged(restored):
    """plugin.worker.Logger: gunicorn builds a request's access atoms
    whenever a logging config is given; ours only when "gunicorn.access"
    takes INFO, which plugin.logs never sets."""
    from gunicorn.config import Config

    from plugin.worker import Logger

    cfg = Config()
    cfg.set("logconfig_dict", logs.config_dict("info", "text"))
    logger = Logger(cfg)
    built = []
    logger.atoms = lambda *args: built.append(args) or {}
    logger.access(None, None, {}, None)
    assert built == []
    logging.getLogger("gunicorn.access").setLevel(logging.INFO)
    try:
        logger.access(None, None, {}, None)
    finally:
        logging.getLogger("gunicorn.access").setLevel(logging.NOTSET)
    assert len(built) == 1
