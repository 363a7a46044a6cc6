"""Derive a wheelhouse list (envs/wheelhouse-*.txt) from the resolver, for an air-gapped node.

    python3.12 scripts/wheelhouse_lock.py --out envs/wheelhouse-X.txt --title "..." \
        --device envs/device-cuda-image-py312.txt [--share envs/wheelhouse-vllm-....txt] \
        [--drop NAME ...] REQUIREMENT ...

Runs ``pip install --dry-run --ignore-installed --report`` with the interpreter running this script
(it must be the node's Python version: 3.12 for the device) for the requirements, preferring the
versions the node already has (``--device``: NAME or NAME==VERSION lines) and those another
wheelhouse already relays (``--share``) wherever every requirement in the closure accepts them
(as pip constraints; iterated until stable), then writes the closure minus:
  * what the node has: a known version equal to the resolved one, or an unknown version that no
    requirement in the closure caps or pins (lower bounds on those are listed in the header and
    checked on the node by ``scripts/wheelcheck.py``); requirements of distributions the node
    itself provides (its torch's pinned CUDA libraries) count as met;
  * what ``--share`` relays at the same version (the env puts that target after its own);
  * ``--drop`` names (optional kernels the engine guards at import), with their own closure where
    nothing else needs it.
Stdlib + pip's vendored ``packaging`` only.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.version import Version
except ImportError:  # pragma: no cover - pip always vendors it
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version


CAPS = ("==", "===", "<", "<=", "~=")  # specifier operators a version of unknown age may not meet


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str | None) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    if not path:
        return out
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, ver = line.partition("==")
        out[norm(name)] = ver.strip() or None
    return out


def resolve(reqs: list[str], constraints: dict[str, str]) -> list[dict]:
    with tempfile.TemporaryDirectory() as d:
        c = Path(d) / "constraints.txt"
        c.write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())))
        rep = Path(d) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
               "--report", str(rep), "-c", str(c), *reqs]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"pip could not resolve {reqs} with constraints {constraints}:\n{r.stderr[-3000:]}")
        return json.loads(rep.read_text())["install"]


def graph(items: list[dict]) -> tuple[dict, dict]:
    """(name -> (version, metadata)), (name -> [(requirer, Requirement)]) with markers evaluated for
    the extras the closure asks of each distribution."""
    dists = {norm(it["metadata"]["name"]): (it["metadata"]["version"], it["metadata"]) for it in items}
    extras: dict[str, set] = {n: set(it.get("requested_extras") or []) for n, it in
                              ((norm(i["metadata"]["name"]), i) for i in items)}  # fmt: skip
    for _ in range(3):  # extras named by requirers (flashinfer-python[cu13]) enable more requirements
        for n, (_, md) in dists.items():
            for s in md.get("requires_dist") or []:
                q = Requirement(s)
                if q.extras and norm(q.name) in dists and applies(q, extras[n]):
                    extras[norm(q.name)] |= set(q.extras)
    needs: dict[str, list] = {n: [] for n in dists}
    for n, (_, md) in dists.items():
        for s in md.get("requires_dist") or []:
            q = Requirement(s)
            if norm(q.name) in dists and applies(q, extras[n]):
                needs[norm(q.name)].append((n, q))
    return dists, needs


def applies(q: Requirement, extras: set) -> bool:
    if q.marker is None:
        return True
    env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython"}  # fmt: skip
    return any(q.marker.evaluate({**env, "extra": e}) for e in (extras or {""}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("requirements", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", required=True, help="first header line")
    ap.add_argument("--device", required=True)
    ap.add_argument("--share")
    ap.add_argument("--drop", nargs="*", default=[], help="not relayed (the node's version, or none, is used)")
    ap.add_argument("--note", action="append", default=[], help="a header line saying why (repeatable)")
    ap.add_argument("--cache", help="keep the final resolution here and reuse it (same requirements)")
    a = ap.parse_args()
    device, share = read_pins(a.device), read_pins(a.share)
    preferred = {n: v for n, v in {**share, **device}.items() if v}  # the node's own version wins
    cache = Path(a.cache) if a.cache else None
    if cache and cache.exists() and json.loads(cache.read_text())["requirements"] == a.requirements:
        saved = json.loads(cache.read_text())
        constraints, items = saved["constraints"], saved["install"]
    else:
        constraints = {}
        for _ in range(4):
            items = resolve(a.requirements, constraints)
            dists, needs = graph(items)
            new = {
                n: v for n, v in preferred.items() if n in dists and all(Version(v) in q.specifier for _, q in needs[n])
            }
            if new == constraints:
                break
            constraints = new
        if cache:
            cache.write_text(json.dumps({"requirements": a.requirements, "constraints": constraints, "install": items}))
    dists, needs = graph(items)
    drop = {norm(x) for x in a.drop}
    top = {norm(Requirement(r).name) for r in a.requirements}
    # what only dropped distributions need goes too
    changed = True
    while changed:
        changed = False
        for n in dists:
            if n in drop or n in top or n in device:  # the node's own copy is not relayed anyway
                continue
            users = {u for u, _ in needs[n]}
            if users and users <= drop:
                drop.add(n)
                changed = True
    # the node's distributions it keeps (fixed point: one relayed for its version needs its own deps)
    relayed: set[str] = set()
    while True:
        on_node = {n for n in dists if n in device and n not in relayed}
        live = {n: [(u, q) for u, q in needs[n] if u not in on_node and u not in drop] for n in dists}
        new = {
            n
            for n in dists
            if n in device
            and not (
                device[n] == dists[n][0]
                or (device[n] is None and not any(s.operator in CAPS for _, q in live[n] for s in q.specifier))
            )
        }
        if new == relayed:
            break
        relayed = new
    keep, shared, node_checks, dropped, why = [], [], [], [], []
    for n, (ver, md) in dists.items():
        if n in drop:
            dropped.append(f"{md['name']}=={ver}")
            continue
        if n in on_node:
            node_checks += [f"{n}{q.specifier}" for u, q in live[n] if str(q.specifier) and device[n] is None]
            continue
        if n in relayed:
            why.append(f"{n} ({', '.join(f'{u}: {q.specifier}' for u, q in live[n] if str(q.specifier))})")
        if share.get(n) == ver:
            shared.append(f"{md['name']}=={ver}")
            continue
        keep.append(f"{md['name']}=={ver}")
    order = {norm(Requirement(r).name): i for i, r in enumerate(a.requirements)}
    keep.sort(key=lambda s: (order.get(norm(s.split("==")[0]), len(order)), norm(s)))
    wrap = lambda items: "\n".join("#   " + " ".join(items[i : i + 6]) for i in range(0, len(items), 6))  # noqa: E731
    header = [
        f"# {a.title}",
        f"# Generated by scripts/wheelhouse_lock.py (Python {sys.version.split()[0]}, "
        f"pip {__import__('pip').__version__}): the resolver's closure of {' '.join(a.requirements)},",
        f"# minus what the node has ({a.device}) and what {a.share or 'no other list'} relays at the same version.",
    ]
    if shared:
        header += [f"# Taken from {a.share} (same version; put its target after this one's):", wrap(sorted(shared))]
    if dropped:
        header += [
            "# Left out on purpose (--drop, and what only they need); scripts/wheelcheck.py --list accepts them:"
        ]
        header += ["# " + n for n in a.note]
        header += [wrap(sorted(dropped)), "# dropped: " + " ".join(sorted(norm(d.split("==")[0]) for d in dropped))]
    if node_checks:
        header += ["# Met by the node's own version (unknown here; scripts/wheelcheck.py checks it there):",
                   wrap(sorted(set(node_checks)))]  # fmt: skip
    if why:
        header += [
            "# Relayed although the node has a version (it differs, or a requirer caps or pins it):",
            wrap(sorted(why)),
        ]
    if constraints:
        header += ["# Preferred (node's or shared list's version, accepted by every requirer):",
                   wrap([f"{n}=={v}" for n, v in sorted(constraints.items())])]  # fmt: skip
    Path(a.out).write_text("\n".join(header + keep) + "\n")
    print(f"{a.out}: {len(keep)} pinned, {len(shared)} shared, {len(dropped)} dropped, {len(dists)} in the closure")


if __name__ == "__main__":
    main()
