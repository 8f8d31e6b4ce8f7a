"""Generates graph_cases.json: what Alembic itself answers for revision graphs.

wasmig's planner (host/plan/src/graph.rs) promises Alembic's semantics. This script builds random
revision graphs (branches, merges, several bases, branch labels anywhere, several depends_on
per revision, ids whose prefixes collide and ids of 3 characters or fewer) and asks Alembic's
own RevisionMap, ScriptDirectory and HeadMaintainer:

- `up`, `down`, `stamp`: the steps and the heads afterwards, from several database states;
- `show`: what `get_revisions(TARGET)` names (`alembic show`);
- `history`: what `walk_revisions(START, END)` lists (`alembic history -r START:END`);
- `revision`: the down revisions of a new revision on `--head SPEC...` with or without
  `--splice` (`alembic revision --head`, `alembic merge`);
- the branch labels of every revision, as Alembic propagates them.

graph/tests.rs replays every case against wasmig. Not run by CI (the cases are checked in);
rerun after changing the generator:

    python3 -m venv /tmp/alv && /tmp/alv/bin/pip install alembic==1.20.1
    /tmp/alv/bin/python host/plan/tests/alembic/alembic_oracle.py > host/plan/tests/alembic/graph_cases.json

Some of Alembic's answers depend on Python's set iteration order (which string hashing
randomizes per process): the order of normalized dependencies, of heads, of a topological
sort's ties. So every case is answered by Alembic in several processes with different
PYTHONHASHSEED values: a case all of them answer alike is kept as it is; one whose answers
differ only in order is kept with every order seen (`orders`), and wasmig must produce one of
them; one whose answers differ otherwise (one process refuses, another does not) is dropped.

Forms where wasmig deliberately accepts more than Alembic (README: "where wasmig differs")
are not generated as questions: REV+N / REV-N in show, history START and stamp; REV@-N
with a revision rather than a label in show; relative stamp targets over a non-empty
database; history `-N:+N`.
"""

import json
import os
import random
import subprocess
import sys
import warnings

from alembic.runtime.migration import HeadMaintainer
from alembic.script import ScriptDirectory
from alembic.script.revision import Revision, RevisionMap

SEEDS = ("0", "1", "2", "3")


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


def refusal(e):
    return "error: %s: %s" % (type(e).__name__, e)


def answer(sd, case):
    """The answer to one case: a dict of result fields, or {"refused": why}."""
    kind, heads, target = case["direction"], case["heads"], case["target"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            if kind in ("up", "down", "stamp"):
                if kind == "up":
                    steps = sd._upgrade_revs(target, tuple(heads))
                elif kind == "down":
                    steps = sd._downgrade_revs(target, tuple(heads))
                else:
                    steps = sd._stamp_revs(tuple(target), tuple(heads))
                got = {}
                if kind != "stamp":
                    got["steps"] = [["upgrade" if step.is_upgrade else "downgrade",
                                     step.revision.revision] for step in steps]
                hm = Heads(heads)
                try:
                    for step in steps:
                        hm.update_to_step(step)
                except KeyError as e:
                    # The steps are Alembic's, but its head bookkeeping fails on them.
                    got["refused"] = refusal(e)
                    return got
                got["heads_after"] = sorted(hm.heads)
                return got
            if kind == "show":
                # A `-N` walk that lands on base yields "base"; one past it, None.
                found = sd.get_revisions(target)
                return {"found": [r if isinstance(r, str) else r.revision if r else "(none)"
                                  for r in found]}
            if kind == "history":
                start, end = target
                return {"found": [r.revision for r in
                                  sd.walk_revisions(base=start or "base", head=end or "heads")]}
            if kind == "revision":
                # ScriptDirectory.generate_revision, up to writing the file.
                found = sd.revision_map.get_revisions(target)
                assert all(h != "base" for h in found), "base as a head"
                if len(set(found)) != len(found):
                    raise ValueError("Duplicate head revisions specified")
                if not case["splice"]:
                    for h in found:
                        if h is not None and not h.is_head:
                            raise ValueError("Revision %s is not a head revision" % h.revision)
                return {"found": [h.revision for h in found if h is not None]}
            raise ValueError("unknown case kind " + kind)
        except Warning as w:
            return {"refused": "warning: %s" % w}
        except Exception as e:  # noqa: BLE001 - any refusal counts
            return {"refused": refusal(e)}


def labels_of(sd, nodes):
    return {n["id"]: sorted(sd.revision_map.get_revision(n["id"]).branch_labels)
            for n in nodes}


# ---- generating the questions ---------------------------------------------------------------

def gen_ids(rng, n):
    """Ids: mostly unique 6-character ones; in some graphs, ids over a 2-letter alphabet whose
    prefixes collide, some of 3 characters or fewer (which Alembic matches only in full)."""
    if rng.random() < 0.6:
        return ["%02d%s" % (i, "".join(rng.choice("0123456789abcdef") for _ in range(4)))
                for i in range(n)]
    ids = []
    while len(ids) < n:
        rid = "".join(rng.choice("ab") for _ in range(rng.choice((2, 3, 4, 4, 5, 6))))
        if rid not in ids:
            ids.append(rid)
    return ids


def gen_nodes(rng, n):
    ids = gen_ids(rng, n)
    nodes = []
    for rid in ids:
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
        if nodes and rng.random() < 0.2:
            count = 2 if rng.random() < 0.4 and len(nodes) > 2 else 1
            deps = rng.sample([x["id"] for x in nodes if x["id"] not in down],
                              min(count, len([x for x in nodes if x["id"] not in down])))
            node["depends_on"] = deps
        nodes.append(node)
    return nodes


def questions(rng, sd, nodes):
    ids = [n["id"] for n in nodes]
    labels = [lab for n in nodes for lab in n["branch_labels"]]

    def some_id():
        return rng.choice(ids)

    def prefix():
        rid = some_id()
        return rid[:rng.choice((2, 3, 4))]

    states = [[]]
    for _ in range(4):
        got = answer(sd, {"direction": "up", "heads": [], "target": some_id()})
        if "refused" not in got:
            states.append(got["heads_after"])
    got = answer(sd, {"direction": "up", "heads": [], "target": "heads"})
    if "refused" not in got:
        states.append(got["heads_after"])
    unique_states = []
    for s in states:
        if s not in unique_states:
            unique_states.append(s)

    def ups():
        t = ["heads", "head", "base", "+1", "+2", "-1", some_id(), some_id(), prefix(),
             prefix(), some_id() + "+1", some_id() + "+2", some_id() + "-1",
             some_id() + "@head", some_id() + "@+1"]
        for lab in labels:
            t += [lab, lab + "@head", lab + "@heads", lab + "@base", lab + "@+1", lab + "@+2",
                  lab + "@-1", lab + "@" + some_id(), lab + "@" + some_id() + "+1",
                  lab + "@" + some_id() + "-1"]
        return t

    def downs():
        t = ["base", "-1", "-2", "+1", some_id(), some_id(), prefix(), some_id() + "-1",
             some_id() + "+1", some_id() + "@-1", "head", "heads"]
        for lab in labels:
            t += [lab, lab + "@-1", lab + "@-2", lab + "@base", lab + "@" + some_id(),
                  lab + "@head", lab + "@" + some_id() + "-1"]
        return t

    def stamps(heads):
        t = [["base"], ["heads"], [some_id()], [prefix()], [some_id(), some_id()]]
        for lab in labels:
            t += [[lab + "@head"], [lab + "@base"], [lab + "@heads"]]
        if not heads:
            # Alembic reads `-N` in stamp only over an empty version table.
            t += [["-1"], ["-2"]] + [[lab + "@-1"] for lab in labels]
        return t

    cases = []
    for heads in unique_states:
        for direction, targets in (("up", ups()), ("down", downs()), ("stamp", stamps(heads))):
            for target in targets:
                cases.append({"direction": direction, "heads": heads, "target": target})

    shows = ["head", "heads", "base", "-1", "-2", "+1", some_id(), some_id(), prefix(),
             prefix(), prefix(), some_id() + "@head"]
    for lab in labels:
        shows += [lab, lab + "@head", lab + "@heads", lab + "@base", lab + "@-1", lab + "@-2",
                  lab + "@" + some_id(), lab + "@+1"]
    cases += [{"direction": "show", "heads": [], "target": t} for t in shows]

    starts = ["", "", "base", "heads", "-1", "-2", some_id(), some_id(), some_id(), prefix()]
    ends = ["", "heads", "head", some_id(), some_id(), "+1", "+2", "+9", some_id() + "+1",
            some_id() + "-1", "-1"]
    for lab in labels:
        starts += [lab + "@base", lab + "@" + some_id(), lab + "@-1", lab + "@head"]
        ends += [lab + "@head", lab + "@heads", lab + "@+1", lab + "@+2"]
    pairs = set()
    for _ in range(40):
        start, end = rng.choice(starts), rng.choice(ends)
        if after_label(start).startswith("-") and after_label(end).startswith("+"):
            continue  # history -N:+N: wasmig accepts more (README)
        pairs.add((start, end))
    cases += [{"direction": "history", "heads": [], "target": list(p)} for p in sorted(pairs)]

    specs = [["head"], ["heads"], ["base"], [some_id()], [some_id()], ["-1"], ["-2"],
             [some_id(), some_id()], [prefix()]]
    rid = some_id()
    specs.append([rid, rid])
    for lab in labels:
        specs += [[lab + "@head"], [lab + "@-1"], [lab + "@heads"]]
    for spec in specs:
        for splice in (False, True):
            cases.append({"direction": "revision", "heads": [], "target": spec,
                          "splice": splice})
    return cases


def after_label(target):
    """What follows `LABEL@` in a target (all of it when there is no label)."""
    return target.rsplit("@", 1)[-1]


def skeleton():
    """The graphs and the questions, without answers (independent of the hash seed)."""
    rng = random.Random(20261201)
    graphs = []
    while len(graphs) < 40:
        nodes = gen_nodes(rng, rng.randint(3, 14))
        try:
            sd = script_dir(nodes)
        except Exception:  # noqa: BLE001 - a generated cycle: skip it
            continue
        ids = [n["id"] for n in nodes]
        for k in range(rng.randint(0, 2)):
            nodes[ids.index(rng.choice(ids))]["branch_labels"].append("lab%d" % k)
        try:
            sd = script_dir(nodes)
        except Exception:  # noqa: BLE001
            continue
        graphs.append({"nodes": nodes, "cases": questions(rng, sd, nodes)})
    return graphs


def answer_all(graphs):
    out = []
    for g in graphs:
        sd = script_dir(g["nodes"])
        out.append({"labels": labels_of(sd, g["nodes"]),
                    "answers": [answer(sd, c) for c in g["cases"]]})
    return out


def ordered_key(got):
    """An answer with its lists sorted: what must agree across hash seeds."""
    key = dict(got)
    for field in ("steps", "found"):
        if field in key:
            key[field] = sorted(map(json.dumps, key[field]))
    return json.dumps(key, sort_keys=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--answer":
        json.dump(answer_all(json.load(sys.stdin)), sys.stdout)
        return
    graphs = skeleton()
    runs = []
    for seed in SEEDS:
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, __file__, "--answer"], input=json.dumps(graphs),
                              capture_output=True, text=True, env=env, check=True)
        runs.append(json.loads(done.stdout))
    dropped = reordered = kept = 0
    for gi, g in enumerate(graphs):
        labels = [r[gi]["labels"] for r in runs]
        if any(lab != labels[0] for lab in labels):
            sys.exit("graph %d: Alembic's branch labels depend on the hash seed" % gi)
        g["labels"] = labels[0]
        cases = []
        for ci, case in enumerate(g["cases"]):
            answers = [r[gi]["answers"][ci] for r in runs]
            if all(a == answers[0] for a in answers):
                case.update(answers[0])
            elif ("refused" not in answers[0]
                  and all(ordered_key(a) == ordered_key(answers[0]) for a in answers)):
                field = "steps" if "steps" in answers[0] else "found"
                orders = []
                for a in answers:
                    if a[field] not in orders:
                        orders.append(a[field])
                case.update(answers[0])
                case["orders"] = orders
                reordered += 1
            else:
                dropped += 1
                continue
            kept += 1
            cases.append(case)
        g["cases"] = cases
    sys.stderr.write("%d cases kept (%d with several orders), %d dropped\n"
                     % (kept, reordered, dropped))
    json.dump({"alembic": "1.20.1", "graphs": graphs}, sys.stdout, indent=None)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
