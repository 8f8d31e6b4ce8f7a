//! Tests of the planner: hand-written graphs, one per rule. The replay of every case
//! Alembic answered is in `alembic`.

use std::collections::BTreeSet;

use super::*;

fn node(id: &str, down: &[&str]) -> Node {
    Node {
        id: id.to_owned(),
        down: down.iter().map(|s| (*s).to_owned()).collect(),
        ..Node::default()
    }
}

fn labelled(mut n: Node, labels: &[&str]) -> Node {
    n.branch_labels = labels.iter().map(|s| (*s).to_owned()).collect();
    n
}

fn depends(mut n: Node, deps: &[&str]) -> Node {
    n.depends_on = deps.iter().map(|s| (*s).to_owned()).collect();
    n
}

fn chain(ids: &[&str]) -> Vec<Node> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| node(id, if i == 0 { &[] } else { &ids[i - 1..i] }))
        .collect()
}

fn revs(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| {
            let sign = if s.action == Direction::Upgrade {
                "+"
            } else {
                "-"
            };
            format!("{sign}{}", s.revision)
        })
        .collect()
}

fn heads(h: &[&str]) -> Vec<String> {
    h.iter().map(|s| (*s).to_owned()).collect()
}

/// The heads after running `steps` from `start`.
fn after(start: &[String], steps: &[Step]) -> Vec<String> {
    let mut set: BTreeSet<String> = start.iter().cloned().collect();
    for s in steps {
        for r in &s.remove_heads {
            assert!(set.remove(r), "step {} removes {r}, not a head", s.revision);
        }
        for a in &s.add_heads {
            assert!(set.insert(a.clone()), "step {} adds {a} twice", s.revision);
        }
    }
    set.into_iter().collect()
}

/// a -> b -> c (branch point) -> d1 -> e1 ; c -> d2 ; (e1, d2) -> m (merge) -> n
fn branched() -> Graph {
    Graph::new(&[
        node("a", &[]),
        node("b", &["a"]),
        node("c", &["b"]),
        node("d1", &["c"]),
        node("e1", &["d1"]),
        node("d2", &["c"]),
        node("m", &["e1", "d2"]),
        node("n", &["m"]),
    ])
    .unwrap()
}

#[test]
fn a_linear_chain_upgrades_and_downgrades_in_order() {
    let mut nodes = chain(&["a1", "b2", "c3", "d4"]);
    nodes.reverse();
    let g = Graph::new(&nodes).unwrap();
    assert_eq!(g.head(), Ok(Some("d4")));
    let plan = g.plan_upgrade(&[], "head").unwrap();
    assert_eq!(revs(&plan), ["+a1", "+b2", "+c3", "+d4"]);
    assert_eq!(plan[0].remove_heads, Vec::<String>::new());
    assert_eq!(plan[1].remove_heads, ["a1"]);
    assert_eq!(plan[1].add_heads, ["b2"]);
    assert_eq!(
        revs(&g.plan_downgrade(&heads(&["d4"]), "b2").unwrap()),
        ["-d4", "-c3"]
    );
    let down = g.plan_downgrade(&heads(&["d4"]), "base").unwrap();
    assert_eq!(down.last().unwrap().add_heads, Vec::<String>::new());
    assert_eq!(after(&heads(&["d4"]), &down), Vec::<String>::new());
}

#[test]
fn empty_project_has_no_head_and_nothing_to_do() {
    let g = Graph::new(&[]).unwrap();
    assert_eq!(g.head(), Ok(None));
    assert!(g.plan_upgrade(&[], "head").unwrap().is_empty());
    assert!(g.plan_upgrade(&[], "heads").unwrap().is_empty());
    assert_eq!(
        g.plan_downgrade(&[], "-1"),
        Err(GraphError::OutOfRange("-1".into()))
    );
}

#[test]
fn relative_targets_move_along_the_chain() {
    let g = Graph::new(&chain(&["a1", "b2", "c3", "d4"])).unwrap();
    assert_eq!(
        revs(&g.plan_upgrade(&heads(&["a1"]), "+2").unwrap()),
        ["+b2", "+c3"]
    );
    assert_eq!(g.plan_upgrade(&[], "b2+1").unwrap().len(), 3);
    assert_eq!(g.plan_upgrade(&[], "d4-2").unwrap().len(), 2);
    assert_eq!(
        revs(&g.plan_downgrade(&heads(&["d4"]), "-2").unwrap()),
        ["-d4", "-c3"]
    );
    assert_eq!(g.plan_downgrade(&heads(&["d4"]), "d4-3").unwrap().len(), 3);
    assert_eq!(g.plan_downgrade(&heads(&["d4"]), "a1+1").unwrap().len(), 2);
    assert_eq!(
        g.plan_upgrade(&heads(&["d4"]), "+1"),
        Err(GraphError::OutOfRange("+1".into()))
    );
    assert_eq!(
        g.plan_upgrade(&heads(&["d4"]), "-1"),
        Err(GraphError::WrongWay {
            target: "-1".into(),
            direction: Direction::Upgrade
        })
    );
    assert!(matches!(
        g.plan_downgrade(&heads(&["b2"]), "+1"),
        Err(GraphError::WrongWay { .. })
    ));
}

#[test]
fn upgrading_to_an_applied_revision_does_nothing_and_downgrading_above_is_refused() {
    let g = Graph::new(&chain(&["a1", "b2", "c3"])).unwrap();
    assert!(g.plan_upgrade(&heads(&["c3"]), "a1").unwrap().is_empty());
    let err = g.plan_downgrade(&heads(&["a1"]), "c3").unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot go to `c3`: it is not an ancestor of the current head(s) a1"
    );
}

#[test]
fn prefixes_resolve_or_are_ambiguous_or_not_found() {
    let g = Graph::new(&chain(&["abc1", "abd2", "x9", "x999"])).unwrap();
    assert_eq!(g.resolve("abc"), Ok("abc1"));
    assert_eq!(g.resolve("x9"), Ok("x9"), "an exact id wins over a prefix");
    assert_eq!(g.resolve("x99"), Ok("x999"));
    // As in Alembic, ids of 3 characters or fewer match only in full.
    let g = Graph::new(&chain(&["abc1", "abd2", "x9"])).unwrap();
    assert_eq!(
        g.resolve("x"),
        Err(GraphError::ShortId {
            prefix: "x".into(),
            ids: vec!["x9".into()]
        })
    );
    assert!(
        g.resolve("x")
            .unwrap_err()
            .to_string()
            .contains("match only in full (did you mean x9?)")
    );
    assert_eq!(
        g.resolve("ab"),
        Err(GraphError::Ambiguous {
            prefix: "ab".into(),
            candidates: vec!["abc1".into(), "abd2".into()]
        })
    );
    assert_eq!(g.resolve("zz"), Err(GraphError::NotFound("zz".into())));
    assert_eq!(g.resolve("abc1+1"), Ok("abd2"));
    assert!(matches!(
        g.plan_upgrade(&[], "ab"),
        Err(GraphError::Ambiguous { .. })
    ));
}

#[test]
fn upgrading_across_a_branch_and_merge_walks_each_branch_in_turn() {
    let g = branched();
    assert!(matches!(g.head(), Ok(Some("n"))));
    // Alembic's order: everything below the merge, one branch at a time.
    assert_eq!(
        revs(&g.plan_upgrade(&[], "head").unwrap()),
        ["+a", "+b", "+c", "+d2", "+d1", "+e1", "+m", "+n"]
    );
    let plan = g.plan_upgrade(&heads(&["c"]), "m").unwrap();
    // Starting a second branch from a branch point inserts a head; the merge collapses two.
    assert_eq!(plan[0].remove_heads, ["c"]);
    assert_eq!(plan[0].add_heads, ["d2"]);
    assert_eq!(plan[1].remove_heads, Vec::<String>::new());
    assert_eq!(plan[1].add_heads, ["d1"]);
    let merge = plan.iter().find(|s| s.revision == "m").unwrap();
    assert_eq!(merge.remove_heads, ["d2", "e1"]);
    assert_eq!(merge.add_heads, ["m"]);
}

#[test]
fn downgrading_to_a_branch_point_removes_both_branches_and_unmerges() {
    let g = branched();
    let plan = g.plan_downgrade(&heads(&["n"]), "c").unwrap();
    assert_eq!(revs(&plan), ["-n", "-m", "-e1", "-d1", "-d2"]);
    assert_eq!(after(&heads(&["n"]), &plan), ["c"]);
    // Undoing only the merge leaves two heads.
    let plan = g.plan_downgrade(&heads(&["n"]), "e1").unwrap();
    assert_eq!(revs(&plan), ["-n", "-m"]);
    assert_eq!(after(&heads(&["n"]), &plan), ["d2", "e1"]);
    // From two heads, -1 is ambiguous; REV-1 names the branch.
    assert!(matches!(
        g.plan_downgrade(&heads(&["d2", "e1"]), "-1"),
        Err(GraphError::AmbiguousCurrent { .. })
    ));
    let plan = g.plan_downgrade(&heads(&["d2", "e1"]), "e1-1").unwrap();
    assert_eq!(revs(&plan), ["-e1"]);
    assert_eq!(after(&heads(&["d2", "e1"]), &plan), ["d1", "d2"]);
    // Down to the branch point on one side only removes that side.
    let plan = g.plan_downgrade(&heads(&["d2", "e1"]), "d1").unwrap();
    assert_eq!(revs(&plan), ["-e1"]);
}

#[test]
fn relative_moves_past_branch_and_merge_points_are_ambiguous() {
    let g = branched();
    assert!(matches!(
        g.plan_upgrade(&heads(&["c"]), "+1"),
        Err(GraphError::AmbiguousWalk { .. })
    ));
    assert!(g.plan_downgrade(&heads(&["n"]), "-1").is_ok());
    assert!(matches!(
        g.plan_downgrade(&heads(&["n"]), "-2"),
        Err(GraphError::AmbiguousWalk { .. })
    ));
    assert!(
        g.resolve("m-1")
            .unwrap_err()
            .to_string()
            .contains("ambiguous walk")
    );
}

#[test]
fn several_heads_make_head_ambiguous_but_heads_works() {
    let g = Graph::new(&[node("a", &[]), node("b", &["a"]), node("c", &["a"])]).unwrap();
    let err = g.plan_upgrade(&[], "head").unwrap_err();
    assert_eq!(
        err,
        GraphError::MultipleHeads {
            target: "head".into(),
            heads: vec!["b".into(), "c".into()]
        }
    );
    assert!(err.to_string().starts_with("multiple heads"));
    let plan = g.plan_upgrade(&[], "heads").unwrap();
    assert_eq!(revs(&plan), ["+a", "+c", "+b"]);
    assert_eq!(after(&[], &plan), ["b", "c"]);
    assert_eq!(g.heads(), ["b", "c"]);
    assert_eq!(g.branch_points(), ["a"]);
}

#[test]
fn several_bases_and_branch_labels() {
    let g = Graph::new(&[
        labelled(node("a1", &[]), &["main"]),
        node("a2", &["a1"]),
        labelled(node("n1", &[]), &["net"]),
        node("n2", &["n1"]),
    ])
    .unwrap();
    assert_eq!(g.bases(), ["a1", "n1"]);
    assert_eq!(
        revs(&g.plan_upgrade(&[], "net@head").unwrap()),
        ["+n1", "+n2"]
    );
    assert_eq!(revs(&g.plan_upgrade(&[], "net@+1").unwrap()), ["+n1"]);
    assert_eq!(
        revs(&g.plan_upgrade(&heads(&["a2"]), "net@+1").unwrap()),
        ["+n1"]
    );
    assert_eq!(
        revs(&g.plan_upgrade(&heads(&["n1"]), "main@+2").unwrap()),
        ["+a1", "+a2"]
    );
    let both = heads(&["a2", "n2"]);
    assert_eq!(revs(&g.plan_downgrade(&both, "net@-1").unwrap()), ["-n2"]);
    assert_eq!(
        revs(&g.plan_downgrade(&both, "net@base").unwrap()),
        ["-n2", "-n1"]
    );
    assert_eq!(g.resolve("net@head"), Ok("n2"));
    assert_eq!(g.resolve("a2@head"), Ok("a2"));
    assert_eq!(g.resolve("net"), Ok("n1"));
    assert_eq!(
        g.resolve("net@a2"),
        Err(GraphError::NotOnBranch {
            revision: "a2".into(),
            branch: "net".into()
        })
    );
    assert_eq!(
        g.resolve("nope@head"),
        Err(GraphError::NoSuchBranch("nope".into()))
    );
    assert_eq!(g.info("n2").unwrap().branch_labels, ["net"]);
}

#[test]
fn a_label_reaches_down_to_its_branch_point() {
    let g = Graph::new(&[
        node("a", &[]),
        node("b", &["a"]),
        node("c1", &["b"]),
        labelled(node("c2", &["c1"]), &["feature"]),
        node("d", &["b"]),
    ])
    .unwrap();
    assert_eq!(g.info("c1").unwrap().branch_labels, ["feature"]);
    assert!(g.info("b").unwrap().branch_labels.is_empty());
    assert!(g.info("d").unwrap().branch_labels.is_empty());
}

#[test]
fn dependencies_are_applied_first_and_are_implied_by_their_dependents() {
    let g = Graph::new(&[
        node("a1", &[]),
        node("a2", &["a1"]),
        labelled(node("n1", &[]), &["net"]),
        depends(node("a3", &["a2"]), &["net"]),
    ])
    .unwrap();
    let plan = g.plan_upgrade(&heads(&["a2"]), "a3").unwrap();
    assert_eq!(revs(&plan), ["+n1", "+a3"]);
    assert_eq!(after(&heads(&["a2"]), &plan), ["a3"]);
    // Downgrading the dependency takes its dependents with it.
    let plan = g.plan_downgrade(&heads(&["a3"]), "net@base").unwrap();
    assert_eq!(revs(&plan), ["-a3", "-n1"]);
    assert_eq!(g.info("a3").unwrap().depends_on, ["net"]);
    assert_eq!(g.real_heads(), ["a3"]);
    assert_eq!(g.heads(), ["n1", "a3"]);
}

#[test]
fn applied_revisions_are_the_heads_and_everything_below_them_in_upgrade_order() {
    let g = Graph::new(&[
        node("a1", &[]),
        node("a2", &["a1"]),
        labelled(node("n1", &[]), &["net"]),
        depends(node("a3", &["a2"]), &["net"]),
        node("b1", &["a1"]),
    ])
    .unwrap();
    assert!(g.applied(&[]).unwrap().is_empty());
    assert_eq!(g.applied(&heads(&["a2"])).unwrap(), ["a1", "a2"]);
    let mut all = g.applied(&heads(&["a3", "b1"])).unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.iter().position(|r| r == "n1") < all.iter().position(|r| r == "a3"));
    all.sort();
    assert_eq!(all, ["a1", "a2", "a3", "b1", "n1"]);
    assert_eq!(
        g.applied(&heads(&["gone"])),
        Err(GraphError::UnknownApplied("gone".into()))
    );
}

#[test]
fn new_revisions_build_on_heads_unless_spliced() {
    let g = branched();
    assert_eq!(
        g.parents_for_new(&heads(&["head"]), false),
        Ok(heads(&["n"]))
    );
    assert_eq!(g.parents_for_new(&heads(&["base"]), false), Ok(vec![]));
    assert_eq!(
        g.parents_for_new(&heads(&["c"]), false),
        Err(GraphError::NotAHead("c".into()))
    );
    assert_eq!(g.parents_for_new(&heads(&["c"]), true), Ok(heads(&["c"])));
    assert_eq!(
        g.parents_for_new(&heads(&["n", "n"]), false),
        Err(GraphError::DuplicateHead("n".into()))
    );
    let two = Graph::new(&[node("a", &[]), node("b", &["a"]), node("c", &["a"])]).unwrap();
    assert!(matches!(
        two.parents_for_new(&heads(&["head"]), false),
        Err(GraphError::MultipleHeads { .. })
    ));
    assert_eq!(
        two.parents_for_new(&heads(&["heads"]), false),
        Ok(heads(&["b", "c"]))
    );
}

#[test]
fn overlapping_upgrade_targets_are_refused() {
    // n is a head by down revisions but b depends on it: `root@heads` names both.
    let g = Graph::new(&[
        labelled(node("x", &[]), &["root"]),
        node("a", &["x"]),
        node("n", &["x"]),
        depends(node("b", &["a"]), &["n"]),
    ])
    .unwrap();
    assert_eq!(
        g.plan_upgrade(&[], "root@heads"),
        Err(GraphError::Overlap {
            revision: "b".into(),
            others: vec!["n".into()]
        })
    );
    assert_eq!(
        revs(&g.plan_upgrade(&[], "heads").unwrap()),
        ["+x", "+n", "+a", "+b"]
    );
}

#[test]
fn stamp_moves_the_branch_it_names_and_purge_starts_over() {
    let g = branched();
    assert_eq!(
        g.plan_stamp(&heads(&["n"]), &heads(&["c"]), false),
        Ok(heads(&["c"]))
    );
    // Only the heads on the named line move: d2 is on another branch.
    assert_eq!(
        g.plan_stamp(&heads(&["d2", "e1"]), &heads(&["d1"]), false),
        Ok(heads(&["d1", "d2"]))
    );
    assert_eq!(
        g.plan_stamp(&heads(&["n"]), &heads(&["base"]), false),
        Ok(vec![])
    );
    let unknown = g
        .plan_stamp(&heads(&["gone"]), &heads(&["b"]), false)
        .unwrap_err();
    assert_eq!(unknown, GraphError::UnknownStamped("gone".into()));
    assert!(
        unknown
            .to_string()
            .contains("stamp cannot tell which line it is on"),
        "{unknown}"
    );
    assert_eq!(
        g.plan_stamp(&heads(&["gone"]), &heads(&["b"]), true),
        Ok(heads(&["b"]))
    );
    // Stamping two revisions of one line keeps only the upper one (no implied heads).
    assert_eq!(
        g.plan_stamp(&[], &heads(&["b", "d1"]), false),
        Ok(heads(&["d1"]))
    );
}

#[test]
fn history_walks_from_the_heads_and_ranges_are_checked() {
    let g = branched();
    assert_eq!(g.walk(), ["n", "m", "e1", "d1", "d2", "c", "b", "a"]);
    assert_eq!(
        g.range(&[], "c", "m").unwrap(),
        ["m", "e1", "d1", "d2", "c"]
    );
    assert_eq!(
        g.range(&heads(&["d1"]), "", "current").unwrap(),
        ["d1", "c", "b", "a"]
    );
    let reversed = g.range(&[], "n", "c").unwrap_err();
    assert_eq!(
        reversed,
        GraphError::BadRange {
            start: "n".into(),
            end: "c".into()
        }
    );
    assert_eq!(
        reversed.to_string(),
        "range `n:c` does not refer to ancestor/descendant revisions along the same branch: \
         START must be END or below it"
    );
    // Two sides of a branch are not a range either, and no database is mentioned.
    let sides = g.range(&[], "d1", "d2").unwrap_err().to_string();
    assert!(sides.starts_with("range `d1:d2` does not refer"), "{sides}");
    assert!(!sides.contains("current head"), "{sides}");
    assert!(matches!(
        g.range(&[], "c", "base"),
        Err(GraphError::BadRange { .. })
    ));
}

/// The graph of the review: a -> b -> c (branch point) -> d1 (label `one`) -> e1;
/// c -> d2; (e1, d2) -> m (merge) -> n.
fn labelled_branched() -> Graph {
    Graph::new(&[
        node("aaaa", &[]),
        node("bbbb", &["aaaa"]),
        node("cccc", &["bbbb"]),
        labelled(node("d1d1", &["cccc"]), &["one"]),
        node("e1e1", &["d1d1"]),
        node("d2d2", &["cccc"]),
        node("mmmm", &["e1e1", "d2d2"]),
        node("nnnn", &["mmmm"]),
    ])
    .unwrap()
}

#[test]
fn minus_n_without_a_revision_counts_down_from_the_head() {
    let g = branched();
    // Alembic's get_revisions: `-1` is one below the head, not the head itself.
    assert_eq!(g.resolve("-1"), Ok("m"));
    assert!(matches!(
        g.resolve("-2"),
        Err(GraphError::AmbiguousWalk { .. })
    ));
    let g = labelled_branched();
    assert_eq!(g.resolve("-1"), Ok("mmmm"));
    assert_eq!(g.resolve("one@-1"), Ok("mmmm"));
    assert!(matches!(
        g.resolve("one@-2"),
        Err(GraphError::AmbiguousWalk { .. })
    ));
    assert_eq!(g.resolve("nnnn-1"), Ok("mmmm"));
    assert_eq!(g.resolve("e1e1-2"), Ok("cccc"));
    assert_eq!(g.resolve("aaaa+1"), Ok("bbbb"));
    assert_eq!(g.resolve("one@head"), Ok("nnnn"));
    assert_eq!(g.resolve("one"), Ok("d1d1"));
    let chain = Graph::new(&chain(&["a111", "b222", "c333"])).unwrap();
    assert_eq!(chain.resolve("-2"), Ok("a111"));
    assert_eq!(
        chain.resolve("-4"),
        Err(GraphError::OutOfRange("-4".into()))
    );
    // `-3` lands on base, which is no revision to show.
    assert!(matches!(
        chain.resolve("-3"),
        Err(GraphError::NoRevision { .. })
    ));
    // Several heads: name them, as `head` does.
    let two = Graph::new(&[node("a", &[]), node("b", &["a"]), node("c", &["a"])]).unwrap();
    assert_eq!(
        two.resolve("-1"),
        Err(GraphError::MultipleHeads {
            target: "-1".into(),
            heads: vec!["b".into(), "c".into()]
        })
    );
    assert_eq!(two.resolve("b-1"), Ok("a"));
}

#[test]
fn forms_that_count_from_the_current_revision_are_refused_without_a_database() {
    let g = labelled_branched();
    for raw in ["+1", "one@+1", "d1d1@+2"] {
        let err = g.resolve(raw).unwrap_err();
        assert_eq!(err, GraphError::CountsFromCurrent(raw.into()));
        assert!(err.to_string().contains("only `wasmig up` reads"), "{err}");
        assert_eq!(
            g.plan_stamp(&[], &heads(&[raw]), false),
            Err(GraphError::CountsFromCurrent(raw.into()))
        );
        assert_eq!(
            g.parents_for_new(&heads(&[raw]), true),
            Err(GraphError::CountsFromCurrent(raw.into()))
        );
    }
    for (raw, reason) in [
        ("base", "empty state"),
        ("one@base", "empty state"),
        ("current", "`current`"),
    ] {
        let err = g.resolve(raw).unwrap_err();
        assert!(
            matches!(&err, GraphError::NoRevision { target, .. } if target == raw),
            "{raw}: {err:?}"
        );
        assert!(err.to_string().contains(reason), "{err}");
    }
}

#[test]
fn history_ranges_read_relative_forms_as_alembic_does() {
    let g = Graph::new(&chain(&["a111", "b222", "c333", "d444", "e555"])).unwrap();
    let r = |s, e| g.range(&[], s, e);
    assert_eq!(r("-2", "heads").unwrap(), ["e555", "d444", "c333"]);
    assert_eq!(r("-2", "").unwrap(), ["e555", "d444", "c333"]);
    assert_eq!(r("-1", "e555").unwrap(), ["e555", "d444"]);
    assert_eq!(r("-2", "c333").unwrap(), ["c333"]);
    // END `+N` counts up from START, stopping at the top.
    assert_eq!(r("b222", "+2").unwrap(), ["d444", "c333", "b222"]);
    assert_eq!(r("b222", "+9").unwrap(), ["e555", "d444", "c333", "b222"]);
    assert_eq!(r("", "+2").unwrap(), ["b222", "a111"]);
    assert_eq!(r("base", "+2").unwrap(), ["b222", "a111"]);
    assert_eq!(r("b222", "e555-1").unwrap(), ["d444", "c333", "b222"]);
    assert_eq!(r("c333", "c333").unwrap(), ["c333"]);
    assert_eq!(r("", "current").unwrap(), Vec::<&str>::new());
    assert_eq!(
        g.range(&heads(&["c333"]), "current", "+1").unwrap(),
        ["d444", "c333"]
    );
    assert_eq!(r("b222", "-1"), Err(GraphError::RangeEndDown("-1".into())));
    assert_eq!(r("+1", ""), Err(GraphError::CountsFromCurrent("+1".into())));
    assert!(matches!(
        r("c333", "b222"),
        Err(GraphError::BadRange { .. })
    ));

    let g = labelled_branched();
    let r = |s, e| g.range(&[], s, e);
    assert_eq!(r("-1", "").unwrap(), ["nnnn", "mmmm"]);
    assert_eq!(r("one@-1", "").unwrap(), ["nnnn", "mmmm"]);
    assert_eq!(r("-1", "nnnn").unwrap(), ["nnnn", "mmmm"]);
    assert_eq!(r("d1d1", "+1").unwrap(), ["e1e1", "d1d1"]);
    assert_eq!(r("d1d1", "+9").unwrap(), ["nnnn", "mmmm", "e1e1", "d1d1"]);
    assert_eq!(r("cccc", "one@+1").unwrap(), ["d1d1", "cccc"]);
    assert_eq!(
        r("", "d1d1+1").unwrap(),
        ["e1e1", "d1d1", "cccc", "bbbb", "aaaa"]
    );
    assert_eq!(r("one@d1d1", "").unwrap(), ["nnnn", "mmmm", "e1e1", "d1d1"]);
    assert_eq!(r("one@head", "").unwrap(), ["nnnn"]);
    assert!(matches!(r("-2", ""), Err(GraphError::AmbiguousWalk { .. })));
    assert!(matches!(
        r("cccc", "+1"),
        Err(GraphError::AmbiguousWalk { .. })
    ));
    assert!(matches!(
        r("d2d2", "e1e1"),
        Err(GraphError::BadRange { .. })
    ));
}

#[test]
fn stamp_and_new_revisions_take_the_relative_forms_show_takes() {
    let g = labelled_branched();
    let n = heads(&["nnnn"]);
    for (target, expected) in [
        ("nnnn-1", "mmmm"),
        ("-1", "mmmm"),
        ("one@-1", "mmmm"),
        ("aaaa+1", "bbbb"),
        ("e1e1-2", "cccc"),
    ] {
        assert_eq!(
            g.plan_stamp(&n, &heads(&[target]), false),
            Ok(heads(&[expected])),
            "stamp {target}"
        );
        assert_eq!(
            g.plan_stamp(&[], &heads(&[target]), false),
            Ok(heads(&[expected])),
            "stamp {target} from base"
        );
    }
    // A relative stamp moves only the heads on the line where it lands.
    assert_eq!(
        g.plan_stamp(&heads(&["d2d2", "e1e1"]), &heads(&["e1e1-1"]), false),
        Ok(heads(&["d1d1", "d2d2"]))
    );
    assert_eq!(
        g.plan_stamp(&heads(&["d2d2", "e1e1"]), &heads(&["one@e1e1-1"]), false),
        Ok(heads(&["d1d1", "d2d2"]))
    );
    let chain = Graph::new(&chain(&["a111", "b222"])).unwrap();
    assert_eq!(
        chain.plan_stamp(&heads(&["b222"]), &heads(&["-2"]), false),
        Ok(vec![])
    );
    assert_eq!(
        g.parents_for_new(&heads(&["nnnn-1"]), false),
        Err(GraphError::NotAHead("mmmm".into()))
    );
    assert_eq!(
        g.parents_for_new(&heads(&["nnnn-1"]), true),
        Ok(heads(&["mmmm"]))
    );
    assert_eq!(
        g.parents_for_new(&heads(&["-1"]), true),
        Ok(heads(&["mmmm"]))
    );
    assert_eq!(
        g.parents_for_new(&heads(&["one@-1"]), true),
        Ok(heads(&["mmmm"]))
    );
    assert_eq!(g.dependency("-1"), Ok("mmmm".into()));
    assert_eq!(g.dependency("one"), Ok("one".into()));
}

#[test]
fn a_label_below_a_branch_or_merge_point_does_not_reach_down() {
    // As Alembic: a label reaches the revisions before it only when the line after it is
    // linear (no branch point, merge point or dependent).
    let g = Graph::new(&[
        node("aaaa", &[]),
        labelled(node("bbbb", &["aaaa"]), &["x"]),
        node("cccc", &["bbbb"]),
        node("dd11", &["cccc"]),
        node("dd22", &["cccc"]),
    ])
    .unwrap();
    assert!(g.info("aaaa").unwrap().branch_labels.is_empty());
    assert_eq!(g.info("dd22").unwrap().branch_labels, ["x"]);
    let g = Graph::new(&[
        node("zzzz", &[]),
        node("aaaa", &["zzzz"]),
        labelled(node("bbbb", &["aaaa"]), &["x"]),
        node("cccc", &["bbbb"]),
        depends(node("qqqq", &["zzzz"]), &["cccc"]),
    ])
    .unwrap();
    assert_eq!(g.info("aaaa").unwrap().branch_labels, ["x"]);
    assert!(g.info("zzzz").unwrap().branch_labels.is_empty());
    assert!(g.info("qqqq").unwrap().branch_labels.is_empty());
}

#[test]
fn a_revision_named_twice_in_a_manifest_is_refused() {
    let err = Graph::new(&[node("a1", &[]), node("b2", &["a1", "a1"])]).unwrap_err();
    assert_eq!(
        err,
        GraphError::Repeated {
            revision: "b2".into(),
            field: "down_revision",
            id: "a1".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "revision `b2` lists `a1` twice in `down_revision` of its migration.toml; list each revision once"
    );
    assert!(matches!(
        Graph::new(&[node("a1", &[]), depends(node("b2", &[]), &["a1", "a1"])]),
        Err(GraphError::Repeated {
            field: "depends_on",
            ..
        })
    ));
    // A dependency that is also a down revision is redundant, not wrong (as in Alembic).
    assert!(Graph::new(&[node("a1", &[]), depends(node("b2", &["a1"]), &["a1"])]).is_ok());
}

#[test]
fn invalid_graphs_are_refused_with_the_revisions_named() {
    assert_eq!(
        Graph::new(&[node("b", &["a"])]).unwrap_err(),
        GraphError::MissingDown {
            revision: "b".into(),
            down: "a".into()
        }
    );
    let Err(GraphError::Cycle(c)) =
        Graph::new(&[node("a", &["c"]), node("b", &["a"]), node("c", &["b"])])
    else {
        panic!("cycle not found")
    };
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4);
    assert!(matches!(
        Graph::new(&[node("a", &["a"])]),
        Err(GraphError::Cycle(_))
    ));
    // A cycle through a dependency.
    assert!(matches!(
        Graph::new(&[depends(node("a", &[]), &["b"]), node("b", &["a"])]),
        Err(GraphError::Cycle(_))
    ));
    assert_eq!(
        Graph::new(&[node("a", &[]), node("a", &[])]).unwrap_err(),
        GraphError::DuplicateId("a".into())
    );
    assert_eq!(
        Graph::new(&[
            labelled(node("a", &[]), &["x"]),
            labelled(node("b", &["a"]), &["x"])
        ])
        .unwrap_err(),
        GraphError::DuplicateLabel {
            label: "x".into(),
            first: "a".into(),
            second: "b".into()
        }
    );
    assert!(matches!(
        Graph::new(&[labelled(node("a", &[]), &["head"])]),
        Err(GraphError::BadLabel { .. })
    ));
    assert!(matches!(
        Graph::new(&[labelled(node("a", &[]), &["a@b"])]),
        Err(GraphError::BadLabel { .. })
    ));
    assert!(matches!(
        Graph::new(&[node("a", &[]), labelled(node("b", &["a"]), &["a"])]),
        Err(GraphError::BadLabel { .. })
    ));
    assert_eq!(
        Graph::new(&[depends(node("a", &[]), &["nope"])]).unwrap_err(),
        GraphError::MissingDependency {
            revision: "a".into(),
            dependency: "nope".into()
        }
    );
}

#[test]
fn stored_heads_must_be_known() {
    let g = Graph::new(&chain(&["a1", "b2"])).unwrap();
    assert_eq!(
        g.plan_upgrade(&heads(&["zz"]), "head"),
        Err(GraphError::UnknownApplied("zz".into()))
    );
    assert_eq!(g.pending(&heads(&["a1"])).unwrap(), ["b2"]);
}

#[test]
fn relative_forms_parse() {
    let r = |s| Relative::parse(s);
    assert_eq!(
        r("+3"),
        Some(Relative {
            label: None,
            symbol: None,
            steps: 3
        })
    );
    assert_eq!(
        r("ab12-2"),
        Some(Relative {
            label: None,
            symbol: Some("ab12"),
            steps: -2
        })
    );
    assert_eq!(
        r("net@+1"),
        Some(Relative {
            label: Some("net"),
            symbol: None,
            steps: 1
        })
    );
    assert_eq!(
        r("net@head-1"),
        Some(Relative {
            label: Some("net"),
            symbol: Some("head"),
            steps: -1
        })
    );
    assert_eq!(r("ab12"), None);
    assert_eq!(r("a-b"), None);
    assert_eq!(r("+"), None);
}

mod alembic;
