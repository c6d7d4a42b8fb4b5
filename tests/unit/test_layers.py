"""Who may import whom (README "Layout"): each package's imports of the
project's own packages, read from its source. An arrow that runs back up
(the datapath importing the store, the cluster importing the composition
root) or product code leaning on test code fails here, not in review."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = {"plugin", "network_driver", "ipam_driver", "datapath", "spec", "cluster", "names", "bench", "testbed", "tests"}
# Each package, and the project's packages it may import.
ALLOWED = {
    "spec": set(),
    "datapath": set(),  # the kernel: pyroute2 and the standard library only
    "names": set(),  # the DNS responder: fed by the cluster, imports none of it
    "ipam_driver": {"spec"},
    "network_driver": {"datapath", "spec"},
    "cluster": {"datapath", "ipam_driver", "names", "spec"},
    "plugin": {"cluster", "datapath", "network_driver", "ipam_driver", "names", "spec"},  # the composition root
    "testbed": {"cluster", "datapath", "network_driver", "ipam_driver", "names", "plugin", "spec"},
    "bench": {"cluster", "datapath", "network_driver", "ipam_driver", "names", "plugin", "spec", "testbed"},
}


def imported(package: str) -> dict[str, set[str]]:
    """Our packages ``package`` imports, each with the files that do."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in OURS and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_package_imports_only_what_its_layer_may():
    wrong = {f"{package} -> {target}": sorted(files)
             for package, allowed in ALLOWED.items()
             for target, files in imported(package).items() if target not in allowed}
    assert wrong == {}


def test_the_rule_covers_every_package_of_ours():
    assert {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"tests"} == set(ALLOWED)
