//! What to do next, for the errors that have an answer: printed by `main` as `hint:` lines
//! after the error.
//!
//! The library's errors say what happened and in what state the database is; advice that
//! names a command or a flag (`wasmig resolve`, `--lock-timeout`) is the CLI's, and lives
//! here, in one place, beside the exit codes (`exit`). An application embedding the library
//! words its own.

use wasmig::db::{
    LockLost, LockLostAfter, OwnRowsWritten, ReadBackUnanswered, RoleLeft, RowsWritten,
    TablesTampered, TamperedAfterCommit,
};
use wasmig::error::{ConfigError, GraphError, NextStep};
use wasmig::error::{
    FailedError, Failure, InProgressError, LockTimeout, MigrationError, ModifiedError, NotFailed,
    ResumeModified, StairwayFailed,
};
use wasmig::graph::Direction;

/// The hint for an error, from the first typed error in its chain that has one.
pub(crate) fn hint_for(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<MigrationError>() {
            return failure_hint(&e.failure);
        }
        if let Some(ModifiedError(modified)) = cause.downcast_ref() {
            let ids: Vec<&str> = modified.iter().map(|m| m.revision.as_str()).collect();
            return Some(format!(
                "if the change is intended, accept it with `wasmig rehash {}`; otherwise restore the files (e.g. `git checkout -- PATH`); `--allow-modified` runs once anyway",
                ids.join(" ")
            ));
        }
        if let Some(FailedError(marks)) = cause.downcast_ref() {
            let rev = one_or_rev(marks.iter().map(|m| m.revision.as_str()));
            return Some(format!(
                "look at the database, finish or undo the revision's work by hand, then run `wasmig resolve {rev} --as applied` (all of its work is in the database) or `wasmig resolve {rev} --as rolled-back` (none of it is)"
            ));
        }
        if let Some(InProgressError(checkpoints)) = cause.downcast_ref() {
            let first = &checkpoints[0];
            let finish = if first.direction == Direction::Upgrade {
                format!("`wasmig up {}` resumes it", first.revision)
            } else {
                format!("`wasmig down` to a target below {} resumes it", first.revision)
            };
            let rev = one_or_rev(checkpoints.iter().map(|c| c.revision.as_str()));
            return Some(format!(
                "finish it first ({finish}), or, after finishing or undoing its work by hand, `wasmig resolve {rev} --as applied` or `--as rolled-back`"
            ));
        }
        if let Some(e) = cause.downcast_ref::<GraphError>() {
            return graph_hint(e);
        }
        if let Some(ConfigError { next: Some(next), .. }) = cause.downcast_ref() {
            return Some(match next {
                NextStep::Init => {
                    "`wasmig init` creates a project here (or pass --project DIR for another)"
                        .into()
                }
                NextStep::Build => "`wasmig build` builds it".into(),
                _ => return None,
            });
        }
        if let Some(e) = cause.downcast_ref::<ResumeModified>() {
            return Some(format!(
                "restore the files to resume, pass --allow-modified to resume with the changed code, or undo its work by hand and run `wasmig resolve {} --as rolled-back`",
                e.revision
            ));
        }
        if let Some(e) = cause.downcast_ref::<StairwayFailed>() {
            return Some(format!(
                "fix {}'s up or down (or its fixture.sql and check.sql) and run `wasmig test` again; `wasmig test --keep` keeps the scratch database to look at",
                e.revision
            ));
        }
        if cause.is::<NotFailed>() {
            return Some("`wasmig current` shows the failed and in-progress revisions".into());
        }
        if cause.is::<LockTimeout>() {
            return Some(
                "wait for it to finish and run the command again, or raise --lock-timeout".into(),
            );
        }
        if cause.is::<LockLost>() || cause.is::<LockLostAfter>() {
            return Some(
                "check `wasmig current` and `wasmig history --log` before running again".into(),
            );
        }
        if cause.is::<ReadBackUnanswered>() {
            return Some(
                "run `wasmig current` to see the heads wasmig_version holds (`wasmig check` compares them with the project), and look for a session holding a lock on it (pg_locks)".into(),
            );
        }
        if let Some(e) = cause.downcast_ref::<RowsWritten>() {
            return Some(format!(
                "remove the statements that write wasmig_* tables from {} (wasmig records its steps itself), then run again",
                e.revision
            ));
        }
        if cause.is::<OwnRowsWritten>() {
            return Some(
                "remove the statements that write wasmig_* tables from the revision (wasmig records its steps itself), then run again".into(),
            );
        }
        if cause.is::<RoleLeft>() {
            return Some(
                "remove the SQL that switches roles (SET ROLE, RESET ROLE, SET SESSION AUTHORIZATION, set_config('role', …)) from the revision: under `role` in wasmig.toml every migration runs as that role; run it with --untrusted to have such SQL refused before it runs".into(),
            );
        }
        if cause.is::<TablesTampered>() || cause.is::<TamperedAfterCommit>() {
            return Some(
                "remove what was added (as the tables' owner), compare `wasmig history --log` with the database, then run again".into(),
            );
        }
        None
    })
}

/// The one revision, or `REV` when there are several.
fn one_or_rev<'a>(mut revisions: impl Iterator<Item = &'a str>) -> &'a str {
    match (revisions.next(), revisions.next()) {
        (Some(one), None) => one,
        _ => "REV",
    }
}

/// The hint for a failed step (exhaustive, as `exit::failure_code` is).
fn failure_hint(failure: &Failure) -> Option<String> {
    match failure {
        Failure::Batch {
            revision,
            direction,
            batch,
            cause,
        } => match batch - 1 {
            0 => failure_hint(cause),
            n => Some(format!(
                "fix the cause and run `wasmig {}` again to resume after batch {n} (`wasmig current` shows it), or undo its work by hand and run `wasmig resolve {revision} --as rolled-back`",
                if *direction == Direction::Upgrade {
                    "up"
                } else {
                    "down"
                }
            )),
        },
        Failure::NotRolledBack {
            revision, unmarked, ..
        } => Some(match unmarked {
            None => format!(
                "inspect the database, finish or undo its work, then run `wasmig resolve {revision} --as applied` or `wasmig resolve {revision} --as rolled-back`"
            ),
            Some(_) => "inspect the database and fix it by hand (e.g. `wasmig stamp`)".into(),
        }),
        Failure::Host(e) => hint_for(e),
        Failure::CommitUnknown(_) => Some(
            "`wasmig current` shows whether it was recorded (and so committed); run `wasmig up` again to apply it if not".into(),
        ),
        Failure::Deadline(_)
        | Failure::Memory { .. }
        | Failure::Tables { .. }
        | Failure::BatchLimit { .. }
        | Failure::TransactionEnded { .. }
        | Failure::GuestError(_)
        | Failure::GuestTrap(_)
        | Failure::UnhandledSql(_)
        | Failure::Sql(_)
        | Failure::Refused(_) => None,
    }
}

/// The hint for a graph error that has a command to look with or to run.
fn graph_hint(err: &GraphError) -> Option<String> {
    let hint = match err {
        GraphError::NotFound(_) | GraphError::NoRevision { .. } => {
            "`wasmig history` lists the revisions"
        }
        GraphError::BadRange { .. } => "`wasmig history` shows the order",
        GraphError::NoSuchBranch(_) => "`wasmig branches` and `wasmig heads` list them",
        GraphError::NothingToMerge(_) => "`wasmig heads` lists the heads to merge",
        GraphError::MergeNotAHead(_) => {
            "merge heads (`wasmig heads` lists them), or pass --splice to merge it anyway, which starts a new branch from it"
        }
        GraphError::NotAHead(_) => "pass --splice to start a new branch from it",
        GraphError::LabelTaken { .. } => "`wasmig branches` lists the branches",
        GraphError::UnknownApplied(_) => {
            "`wasmig down` can revert it from the copy stored in the database"
        }
        GraphError::UnknownStamped(_) => "`wasmig stamp --purge REV...` replaces every stored head",
        GraphError::NotApplied(_) => "`wasmig current` shows what is applied",
        _ => return None,
    };
    Some(hint.to_owned())
}
