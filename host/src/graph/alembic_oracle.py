"""Generates graph_cases.json: upgrade, downgrade and stamp plans computed by Alembic itself.

wasmig's planner (host/src/graph.rs) promises Alembic's semantics. This script builds random
revision graphs (branches, merges, several bases, branch labels, depends_on), asks Alembic's
own RevisionMap and HeadMaintainer what `upgrade`, `downgrade` and `stamp` do from various
database states to many targets, and writes the answers; graph/tests.rs replays every case
against wasmig's planner. Not run by CI (the cases are checked in); rerun after changing the
generator:

    python3 -m venv /tmp/alv && /tmp/alv/bin/pip install alembic==1.20.1
    /tmp/alv/bin/python host/src/graph/alembic_oracle.py > host/src/graph/graph_cases.json

Only cases where Alembic is deterministic are generated: at most one dependency per revision
and labels only on revisions with a linear line of descendants (elsewhere Alembic's result
depends on Python's set iteration order).
"""

import json
import random
import sys
import warnings

from alembic.runtime.migration import HeadMaintainer
from alembic.script import ScriptDirectory
from alembic.script.revision import Revision, RevisionMap
from alembic.util import CommandError


class Heads(HeadMaintainer):
    """HeadMaintainer without a database: it only tracks the set of heads."""

    def __init__(self, heads):
        self.heads = set(heads)

    def _insert_version(self, version):
        assert version not in self.heads
        self.heads.add(version)

    def _delete_version(self, version):
        self.heads.remove(version)

    def _update_version(self, from_, to_):
        assert to_ not in self.heads
        self.heads.remove(from_)
        self.heads.add(to_)


class Script(Revision):
    """A revision with the `module` a migration step expects (never called here)."""

    class module:  # noqa: N801 - mirrors alembic.script.Script.module
        upgrade = downgrade = staticmethod(lambda: None)


def script_dir(nodes):
    revs = [
        Script(n["id"], tuple(n["down"]) or None,
                 dependencies=tuple(n["depends_on"]) or None,
                 branch_labels=tuple(n["branch_labels"]) or None)
        for n in nodes
    ]
    sd = ScriptDirectory.__new__(ScriptDirectory)
    sd.revision_map = RevisionMap(lambda: revs)
    sd.revision_map.heads  # build it now
    return sd


def run(sd, direction, heads, target):
    """(steps, heads after) or an error string; 'warning: ...' when Alembic only warned."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            if direction == "up":
                steps = sd._upgrade_revs(target, tuple(heads))
            elif direction == "down":
                steps = sd._downgrade_revs(target, tuple(heads))
            else:
                steps = sd._stamp_revs(tuple(target), tuple(heads))
            hm = Heads(heads)
            out = []
            for step in steps:
                hm.update_to_step(step)
                if direction != "stamp":
                    out.append(["upgrade" if step.is_upgrade else "downgrade",
                                step.revision.revision])
            return out, sorted(hm.heads)
        except Warning as w:
            return "warning: %s" % w
        except (CommandError, Exception) as e:  # noqa: BLE001 - any refusal counts
            return "error: %s: %s" % (type(e).__name__, e)


def gen_nodes(rng, n):
    nodes = []
    for i in range(n):
        rid = "%02d%s" % (i, "".join(rng.choice("0123456789abcdef") for _ in range(4)))
        heads = [x["id"] for x in nodes if not any(x["id"] in y["down"] for y in nodes)]
        roll = rng.random()
        if not nodes or roll < 0.08:
            down = []
        elif roll < 0.3 and len(heads) >= 2:
            down = rng.sample(heads, 2)
        elif roll < 0.75 and heads:
            down = [rng.choice(heads)]
        else:
            down = [rng.choice(nodes)["id"]]
        node = {"id": rid, "down": down, "depends_on": [], "branch_labels": []}
        if nodes and rng.random() < 0.15:
            node["depends_on"] = [rng.choice(nodes)["id"]]
            if node["depends_on"][0] in down:
                node["depends_on"] = []
        nodes.append(node)
    return nodes


def linear_above(sd, rid):
    rmap = sd.revision_map
    rev = rmap.get_revision(rid)
    while True:
        if len(rev.nextrev) > 1 or len(rev._all_nextrev) > 1:
            return False
        if not rev.nextrev:
            return True
        rev = rmap.get_revision(next(iter(rev.nextrev)))
        if rev.is_merge_point:
            return False


def main():
    rng = random.Random(20261125)
    graphs = []
    while len(graphs) < 30:
        nodes = gen_nodes(rng, rng.randint(3, 14))
        try:
            sd = script_dir(nodes)
        except Exception:  # noqa: BLE001 - a generated cycle: skip it
            continue
        ids = [n["id"] for n in nodes]
        for k in range(rng.randint(0, 2)):
            candidates = [i for i in ids if linear_above(sd, i)]
            if candidates:
                nodes[ids.index(rng.choice(candidates))]["branch_labels"].append("lab%d" % k)
        if any(len(n["depends_on"]) > 0 and n["depends_on"][0] not in ids for n in nodes):
            continue
        try:
            sd = script_dir(nodes)
        except Exception:  # noqa: BLE001
            continue
        labels = [l for n in nodes for l in n["branch_labels"]]
        states = [[]]
        for _ in range(4):
            got = run(sd, "up", [], rng.choice(ids))
            if not isinstance(got, str):
                states.append(got[1])
        got = run(sd, "up", [], "heads")
        if not isinstance(got, str):
            states.append(got[1])
        unique_states = []
        for s in states:
            if s not in unique_states:
                unique_states.append(s)

        def some_id():
            return rng.choice(ids)

        def ups():
            t = ["heads", "head", "base", "+1", "+2", "-1", some_id(), some_id(), some_id()[:4],
                 some_id() + "+1", some_id() + "+2", some_id() + "-1", some_id() + "@head"]
            for l in labels:
                t += [l, l + "@head", l + "@base", l + "@+1", l + "@+2", l + "@-1",
                      l + "@" + some_id()]
            return t

        def downs():
            t = ["base", "-1", "-2", "+1", some_id(), some_id(), some_id()[:4],
                 some_id() + "-1", some_id() + "+1", "head", "heads"]
            for l in labels:
                t += [l, l + "@-1", l + "@-2", l + "@base", l + "@" + some_id(), l + "@head"]
            return t

        def stamps():
            t = [["base"], ["heads"], [some_id()], [some_id(), some_id()]]
            for l in labels:
                t += [[l + "@head"], [l + "@base"]]
            return t

        cases = []
        for heads in unique_states:
            for direction, targets in (("up", ups()), ("down", downs()), ("stamp", stamps())):
                for target in targets:
                    got = run(sd, direction, heads, target)
                    case = {"direction": direction, "heads": heads, "target": target}
                    if isinstance(got, str):
                        case["refused"] = got
                    else:
                        if direction != "stamp":
                            case["steps"] = got[0]
                        case["heads_after"] = got[1]
                    cases.append(case)
        graphs.append({"nodes": nodes, "cases": cases})
    json.dump({"alembic": "1.20.1", "graphs": graphs}, sys.stdout, indent=None)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
