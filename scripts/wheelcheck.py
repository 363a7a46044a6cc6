"""Metadata-level check that an offline install is complete: walk the requirements from ROOTS through
the distributions found in the --site folders (first wins, as on PYTHONPATH), then the running
interpreter's own (--system, on the node), then the node's package list (--node, offline: a name
with no version is assumed to be met unless the requirement caps or pins it). Prints every missing
or conflicting requirement and exits 1 if there is one. Stdlib + pip's vendored ``packaging``.

    here:    python3.12 scripts/wheelcheck.py --site /tmp/sgl-check --node envs/device-cuda-image-py312.txt \
                 --share envs/wheelhouse-vllm-0.26.0-cu130-py312.txt sglang sglang-router
    on node: python3 scripts/wheelcheck.py --site /tmp/site-sglang /tmp/site --system sglang sglang-router
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import sys
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.version import Version
except ImportError:  # pragma: no cover
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version

CAPS = ("==", "===", "<", "<=", "~=")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: str | None) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for line in Path(path).read_text().splitlines() if path else []:
        line = line.split("#", 1)[0].strip()
        if line:
            n, _, v = line.partition("==")
            out[norm(n)] = v.strip() or None
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("roots", nargs="+")
    ap.add_argument("--site", nargs="+", default=[], help="install targets, in PYTHONPATH order")
    ap.add_argument("--system", action="store_true", help="then the running interpreter's own packages")
    ap.add_argument("--node", help="offline: the node's package list (NAME or NAME==VERSION)")
    ap.add_argument("--share", help="offline: another wheelhouse list installed after --site on the node")
    ap.add_argument("--list", help="the wheelhouse list: what its '# dropped:' line names is accepted, not a problem")
    a = ap.parse_args()
    dropped = set()
    for line in Path(a.list).read_text().splitlines() if a.list else []:
        if line.startswith("# dropped:"):
            dropped |= {norm(n) for n in line.split(":", 1)[1].split()}
    found: dict[str, tuple[str, md.Distribution | None, str]] = {}  # name -> (version, dist, where)
    for site in a.site:
        for d in md.distributions(path=[site]):
            found.setdefault(norm(d.metadata["Name"]), (d.version, d, site))
    for n, v in pins(a.share).items():
        found.setdefault(n, (v, None, a.share))
    if a.system:
        for d in md.distributions(path=[p for p in sys.path if p not in a.site]):
            found.setdefault(norm(d.metadata["Name"]), (d.version, d, "system"))
    node = pins(a.node)
    problems, assumed, accepted, seen = [], [], [], set()
    todo = [(norm(r), set()) for r in a.roots]
    while todo:
        name, extras = todo.pop()
        if (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        if name not in found:
            if name not in node:
                problems.append(f"{name}: not installed")
            continue
        dist = found[name][1]
        if dist is None:  # a shared list's pin: its own closure was checked when it was built
            continue
        for s in dist.requires or []:
            q = Requirement(s)
            env = {"extra": ""}
            if q.marker is not None and not any(q.marker.evaluate({**env, "extra": e}) for e in (extras or {""})):
                continue
            dep = norm(q.name)
            if dep in found:
                ver = found[dep][0]
                if ver and not q.specifier.contains(Version(ver), prereleases=True):
                    problems.append(f"{name} needs {q} but {dep} {ver} ({found[dep][2]})")
                todo.append((dep, set(q.extras)))
            elif dep in node:
                v = node[dep]
                if v is not None and not q.specifier.contains(Version(v), prereleases=True):
                    problems.append(f"{name} needs {q} but the node has {dep} {v}")
                elif v is None and str(q.specifier):
                    (problems if any(x.operator in CAPS for x in q.specifier) else assumed).append(
                        f"{name} needs {q}: the node's {dep} (version unknown here)"
                    )
            else:
                problems.append(f"{name} needs {q}: not installed")
    for p in list(problems):
        dep = p.split(" needs ", 1)[1] if " needs " in p else p
        if norm(re.split(r"[ <>=!~;\[:]", dep, maxsplit=1)[0]) in dropped:
            problems.remove(p)
            accepted.append(p)
    n_dists = len({n for n, _ in seen})
    print(f"[wheelcheck] {n_dists} distributions reached from {' '.join(a.roots)}; "
          f"{len(assumed)} lower bounds left to the node's versions, "
          f"{len(accepted)} accepted (dropped on purpose), {len(problems)} problems")  # fmt: skip
    for p in sorted(set(assumed)):
        print("  assumed:", p)
    for p in sorted(set(accepted)):
        print("  accepted:", p)
    for p in sorted(set(problems)):
        print("  PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
