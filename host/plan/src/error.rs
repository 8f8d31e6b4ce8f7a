//! The planner's typed errors: an unusable project file ([`ConfigError`]) and an
//! inconsistent revision graph or target ([`GraphError`]). Callers branch on them (the CLI
//! maps them to exit codes 3 and 4).
//!
//! Not here: errors of running a migration (the `wasmig` library's `error` module).

use std::path::PathBuf;

/// The project or its configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// What is wrong, naming the file or setting.
    pub message: String,
    /// What would make it usable, when that is a step of wasmig's; the front end words it
    /// (the CLI as a command to run).
    pub next: Option<NextStep>,
}

/// A step of wasmig's that fixes an error: the library names it, the front end says how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NextStep {
    /// Create the project (its `wasmig.toml`, its versions directory and workspace).
    Init,
    /// Build the revisions' components from their sources.
    Build,
}

impl ConfigError {
    /// A configuration error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            next: None,
        }
    }

    /// A configuration error that `next` fixes.
    pub fn with_next(message: impl Into<String>, next: NextStep) -> Self {
        ConfigError {
            message: message.into(),
            next: Some(next),
        }
    }
}

/// The revisions, or a target among them, are inconsistent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    /// No revision matches.
    #[error("revision `{0}` not found")]
    NotFound(String),
    /// A prefix matches no long id, only ids of 3 characters or fewer, which match in full
    /// only (as in Alembic).
    #[error("revision `{prefix}` not found: ids of 3 characters or fewer match only in full (did you mean {}?)", .ids.join(", "))]
    ShortId {
        /// What the user typed.
        prefix: String,
        /// The short ids it is a prefix of.
        ids: Vec<String>,
    },
    /// A target that is valid but names no revision where one is needed (`show base`).
    #[error("`{target}` names no revision: {reason}; name a revision")]
    NoRevision {
        /// What the user typed.
        target: String,
        /// What it names instead.
        reason: &'static str,
    },
    /// `+N` or `LABEL@+N` where no current revision is read (`show`, `stamp`, `--head`...).
    #[error(
        "`{0}` counts up from the database's current revision, which only `wasmig up` reads; here name the revision to count from (REV+N), or count down from the head (-N)"
    )]
    CountsFromCurrent(String),
    /// `history -r START:END` where START is not below END.
    #[error(
        "range `{start}:{end}` does not refer to ancestor/descendant revisions along the same branch: START must be END or below it"
    )]
    BadRange {
        /// START as typed.
        start: String,
        /// END as typed.
        end: String,
    },
    /// `history -r START:-N`.
    #[error(
        "`{0}` cannot end a range: END counts up from START (`START:+N`); name the revision instead (REV-N)"
    )]
    RangeEndDown(String),
    /// A prefix matches several revisions.
    #[error("revision prefix `{prefix}` is ambiguous: it matches {}", .candidates.join(", "))]
    Ambiguous {
        /// What the user typed.
        prefix: String,
        /// The full ids it matches.
        candidates: Vec<String>,
    },
    /// Two revisions share an id.
    #[error("duplicate revision id `{id}` in {} and {}", .first.display(), .second.display())]
    Duplicate {
        /// The id.
        id: String,
        /// The first directory.
        first: PathBuf,
        /// The second directory.
        second: PathBuf,
    },
    /// A down revision names a revision that does not exist.
    #[error("revision `{revision}` has down revision `{down}`, which is not found")]
    MissingDown {
        /// The revision whose manifest is wrong.
        revision: String,
        /// The missing one.
        down: String,
    },
    /// The down revisions form a cycle.
    #[error("cycle in the revision graph: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// Two revisions share an id (in the planner's input).
    #[error("duplicate revision id `{0}`")]
    DuplicateId(String),
    /// A branch label is declared twice.
    #[error(
        "branch label `{label}` is declared by both `{first}` and `{second}`; labels name one branch"
    )]
    DuplicateLabel {
        /// The label.
        label: String,
        /// The first revision declaring it.
        first: String,
        /// The second.
        second: String,
    },
    /// A branch label cannot be used.
    #[error("revision `{revision}` has branch label `{label}`, which is not usable: {reason}")]
    BadLabel {
        /// The revision declaring it.
        revision: String,
        /// The label.
        label: String,
        /// Why.
        reason: &'static str,
    },
    /// A `depends_on` names nothing.
    #[error(
        "revision `{revision}` depends on `{dependency}`, which is not found (neither a revision id nor a branch label)"
    )]
    MissingDependency {
        /// The revision whose manifest is wrong.
        revision: String,
        /// What it names.
        dependency: String,
    },
    /// A branch name that is neither a label nor a revision.
    #[error("no such branch: `{0}`")]
    NoSuchBranch(String),
    /// `LABEL@REV` where REV is not on that branch.
    #[error("revision `{revision}` is not a member of branch `{branch}`")]
    NotOnBranch {
        /// The revision.
        revision: String,
        /// The branch.
        branch: String,
    },
    /// A target that needs one head, where there are several.
    #[error("multiple heads: `{target}` is ambiguous between {}; {}, or merge them with `wasmig merge heads -m MESSAGE`", .heads.join(", "), multiple_heads_hint(.target))]
    MultipleHeads {
        /// What the user asked for.
        target: String,
        /// The heads it could mean.
        heads: Vec<String>,
    },
    /// `wasmig check --single-head` found several.
    #[error("multiple heads: {}; two changes each added a revision on the same parent: merge them with `wasmig merge heads -m MESSAGE`", .0.join(", "))]
    NotSingleHead(Vec<String>),
    /// A relative move crosses a branch point or merge point.
    #[error("ambiguous walk: from `{from}` the next revision could be {}; name the revision, or use LABEL@+N / LABEL@-N", .candidates.join(" or "))]
    AmbiguousWalk {
        /// Where the walk was.
        from: String,
        /// Where it could go.
        candidates: Vec<String>,
    },
    /// A relative target from the current revision, with several current heads.
    #[error("`{target}` is ambiguous: the database has several current heads ({}); name the branch: LABEL@-1, or REV@-1 with one of those heads", .heads.join(", "))]
    AmbiguousCurrent {
        /// What the user asked for.
        target: String,
        /// The current heads.
        heads: Vec<String>,
    },
    /// Upgrade targets where one is an ancestor of another.
    #[error("requested revision `{revision}` overlaps with other requested revisions {}", .others.join(", "))]
    Overlap {
        /// The upper one.
        revision: String,
        /// The ones below it.
        others: Vec<String>,
    },
    /// `up -N` or `down +N`.
    #[error("cannot {direction} to `{target}`: relative to the current revision, {direction} takes {}", relative_sign(.direction))]
    WrongWay {
        /// What the user asked for.
        target: String,
        /// `upgrade` or `downgrade`.
        direction: crate::graph::Direction,
    },
    /// A downgrade target that is not below the current heads.
    #[error("cannot go to `{target}`: it is not an ancestor of the current head(s) {}", list_or_base(.heads))]
    NotAncestor {
        /// The target.
        target: String,
        /// The current heads.
        heads: Vec<String>,
    },
    /// `--head` (or `merge`) naming one revision twice.
    #[error("revision `{0}` is named twice as a head to build on; name each head once")]
    DuplicateHead(String),
    /// `resolve` of a step whose starting heads are no longer the database's heads.
    #[error("cannot resolve `{revision}`: the heads moved since it failed (it started from {}, the database is now at {}); put the version table back as it was, or resolve it as the other outcome", .expected.join(", "), list_or_base(.found))]
    HeadsMoved {
        /// The failed revision.
        revision: String,
        /// The heads the failed step removes.
        expected: Vec<String>,
        /// The heads now.
        found: Vec<String>,
    },
    /// `wasmig merge` naming fewer than two revisions.
    #[error("nothing to merge: {} is a single revision", if .0.is_empty() { "base".to_owned() } else { .0.join(", ") })]
    NothingToMerge(Vec<String>),
    /// `wasmig revision --head REV` on a revision that is not a head, without `--splice`.
    #[error("revision `{0}` is not a head revision")]
    NotAHead(String),
    /// `wasmig merge REV...` naming a revision that is not a head, without `--splice`.
    #[error("revision `{0}` is not a head revision, so there is nothing to merge it into")]
    MergeNotAHead(String),
    /// A manifest names the same revision twice in one field.
    #[error(
        "revision `{revision}` lists `{id}` twice in `{field}` of its migration.toml; list each revision once"
    )]
    Repeated {
        /// The revision whose manifest is wrong.
        revision: String,
        /// `down_revision` or `depends_on`.
        field: &'static str,
        /// The repeated id.
        id: String,
    },
    /// `wasmig revision --branch-label L` where L is taken.
    #[error(
        "branch label `{label}` is already used by revision `{revision}` (as a branch label or as its id); choose another"
    )]
    LabelTaken {
        /// The label asked for.
        label: String,
        /// The revision that declares it, or whose id it is.
        revision: String,
    },
    /// The database is at a revision the project does not contain.
    #[error(
        "the database is at revision `{0}`, which this project does not contain; are you running an older checkout?"
    )]
    UnknownApplied(String),
    /// `wasmig stamp` (without `--purge`) while the database is at a revision the project
    /// does not contain.
    #[error(
        "the database is at revision `{0}`, which this project does not contain, so stamp cannot tell which line it is on"
    )]
    UnknownStamped(String),
    /// `wasmig down` of an applied revision that is neither in the project nor stored in the
    /// database's artifact table (stamped, or applied before wasmig stored artifacts).
    #[error(
        "the database is at revision `{0}`, which this project does not contain and of which the database stores no copy (it was stamped, or applied before wasmig stored artifacts); revert it from a checkout that contains it"
    )]
    NoStoredCopy(String),
    /// `wasmig rehash` on a revision the database has not applied.
    #[error("revision `{0}` is not applied, so there is no recorded checksum to replace")]
    NotApplied(String),
    /// A relative target moves past the ends of the graph.
    #[error("relative target `{0}` goes past the end of the revision graph (not enough revisions)")]
    OutOfRange(String),
}

fn relative_sign(direction: &crate::graph::Direction) -> &'static str {
    match direction {
        crate::graph::Direction::Upgrade => "+N",
        crate::graph::Direction::Downgrade => "-N",
    }
}

fn list_or_base(heads: &[String]) -> String {
    if heads.is_empty() {
        "(none: the database is at base)".to_owned()
    } else {
        heads.join(", ")
    }
}

/// What to write instead of a target that needs one head where there are several: a walk
/// down (`-N`, `LABEL@-N`) names its branch, anything else names the head or takes them all.
fn multiple_heads_hint(target: &str) -> String {
    let steps = target.rsplit_once('@').map_or(target, |(_, rest)| rest);
    if let Some(n) = steps.strip_prefix('-') {
        format!("walk down one branch: LABEL@-{n}, or REV-{n} from one of those heads")
    } else {
        "name one of them (or LABEL@head), or use `heads`".to_owned()
    }
}
