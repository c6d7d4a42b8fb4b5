"""The start-up reconcile runs in a child the master waits for before
listening, so the master (and the workers it forks) never import pyroute2 for
it, and Flask and gunicorn load meanwhile."""
import subprocess
import sys

from testbed.server import REPO


PROLOGUE = """
import sys, types
from plugin import server
def reconcile_in_child(reconcile):
    server._wait_reconcile(server._start_reconcile(types.SimpleNamespace(reconcile=reconcile)))
"""


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROLOGUE + code], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_reconcile_runs_in_a_child_that_is_waited_for(tmp_path):
    done = tmp_path / "done"
    got = run(f"""
import os, pathlib
def reconcile():
    import pyroute2
    pathlib.Path({str(done)!r}).write_text(str(os.getpid()))
    return []
reconcile_in_child(reconcile)
assert pathlib.Path({str(done)!r}).read_text() != str(os.getpid()), "ran in the master"
assert "pyroute2" not in sys.modules
print("master goes on")
""")
    assert got.returncode == 0, got.stderr
    assert got.stdout == "master goes on\n"


def test_the_server_module_leaves_flask_gunicorn_and_pyroute2_for_later():
    got = run('assert not {"flask", "gunicorn", "pyroute2"} & set(sys.modules), sys.modules')
    assert got.returncode == 0, got.stderr


def test_a_failed_reconcile_is_logged_and_serving_goes_on():
    got = run("""
import logging
from testbed.server import REPO
logging.basicConfig(level=logging.INFO)
def reconcile():
    raise RuntimeError("netlink says no")
reconcile_in_child(reconcile)
print("master goes on")
""")
    assert got.returncode == 0, got.stderr
    assert got.stdout == "master goes on\n"
    assert "netlink says no" in got.stderr and "serving anyway" in got.stderr
