"""The start-up reconcile runs in a child the master waits for, so the master
(and the workers it forks) never import pyroute2 for it."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROLOGUE = """
import sys, types
from plugin import server
def plugin(reconcile):
    return types.SimpleNamespace(network=types.SimpleNamespace(reconcile=reconcile))
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
server._reconcile_in_child(plugin(reconcile))
assert pathlib.Path({str(done)!r}).read_text() != str(os.getpid()), "ran in the master"
assert "pyroute2" not in sys.modules
print("master goes on")
""")
    assert got.returncode == 0, got.stderr
    assert got.stdout == "master goes on\n"


def test_a_failed_reconcile_is_logged_and_serving_goes_on():
    got = run("""
import logging
logging.basicConfig(level=logging.INFO)
def reconcile():
    raise RuntimeError("netlink says no")
server._reconcile_in_child(plugin(reconcile))
print("master goes on")
""")
    assert got.returncode == 0, got.stderr
    assert got.stdout == "master goes on\n"
    assert "netlink says no" in got.stderr and "serving anyway" in got.stderr
