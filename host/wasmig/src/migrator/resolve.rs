//! `wasmig resolve`: settling by hand a revision marked failed or a batched step part-way
//! through, once someone has looked at the database.

use super::*;

/// The body of [`Migrator::resolve`], under the lock.
pub(super) async fn resolve(
    project: &Project,
    set: &RevisionSet,
    db: &dyn Database,
    target: &str,
    state: Resolution,
) -> anyhow::Result<HeadsMoved> {
    db.ensure_version_tables().await?;
    let (id, mark, batched) = find_mark(set, db, target).await?;
    let heads = db.heads().await?;
    // `--as applied` completes a failed upgrade; `--as rolled-back` completes a failed
    // downgrade. Otherwise the heads stay as the failed step found them.
    let step_done = (mark.direction == Direction::Upgrade) == (state == Resolution::Applied);
    if step_done && !mark.remove_heads.iter().all(|h| heads.contains(h)) {
        return Err(GraphError::HeadsMoved {
            revision: id.clone(),
            expected: mark.remove_heads.clone(),
            found: heads.clone(),
        }
        .into());
    }
    let new = if step_done {
        moved_heads(&heads, &mark)
    } else {
        heads.clone()
    };
    // An applied revision gets the checksum of its files now, so later edits are noticed.
    let artifact = set.find(&id).and_then(|revision| {
        revision::read_artifact(revision, &crate::artifact::build_dir(project))
            .ok()
            .map(|a| (revision, a))
    });
    // The checksum of what ran (the `failed` row records it), not of the files now: a
    // fixed file must not be accepted without `rehash`.
    let ran = match &batched {
        Some(c) => Some(c.checksum.clone()),
        None => db
            .history()
            .await?
            .into_iter()
            .rev()
            .find(|h| h.revision == id && h.direction == Event::Failed)
            .map(|h| h.checksum),
    }
    .filter(|c| !c.is_empty());
    let checksum = recorded_checksum(&id, state, ran, artifact.as_ref().map(|(_, a)| a))?;
    // The artifact table follows the heads, as after the step itself: stored once the
    // revision counts as applied (only if the files are what ran), forgotten once it
    // counts as reverted.
    let to_store = match (state, &artifact) {
        (Resolution::Applied, Some((revision, a))) if a.checksum() == checksum => {
            Some(revision.to_stored(a)?)
        }
        _ => None,
    };
    let now: DateTime<Utc> = Utc::now();
    let note = format!("resolved as {}", state.as_str());
    let record = StepRecord {
        remove: &heads,
        add: &new,
        revision: &id,
        direction: Event::Resolve,
        checksum: &checksum,
        started_at: now,
        finished_at: now,
        error: Some(&note),
        sqlstate: None,
    };
    let mut session = db.begin().await?;
    let written = async {
        session.record_step(&record).await?;
        match (&to_store, state) {
            (Some(stored), _) if step_done => session.store_artifact(stored).await?,
            (None, Resolution::RolledBack) if step_done => session.forget_artifact(&id).await?,
            _ => {}
        }
        if batched.is_some() {
            session.clear_checkpoint(&id).await
        } else {
            session.clear_failed(&id).await
        }
    }
    .await;
    if let Err(e) = written {
        let _ = session.rollback().await;
        return Err(e);
    }
    session.commit().await?;
    Ok(HeadsMoved {
        revision: id,
        before: heads,
        after: new,
    })
}

/// The failed mark (or the checkpoint, as a mark) `target` names, with the checkpoint when
/// it is a batched step part-way through.
pub(super) async fn find_mark(
    set: &RevisionSet,
    db: &dyn Database,
    target: &str,
) -> anyhow::Result<(String, FailedMark, Option<Checkpoint>)> {
    let failed = db.failed().await?;
    let checkpoints = db.checkpoints().await?;
    // An exact id first: the mark may name a revision this checkout no longer has.
    let id = match failed
        .iter()
        .map(|f| &f.revision)
        .chain(checkpoints.iter().map(|c| &c.revision))
        .find(|r| *r == target)
    {
        Some(r) => r.clone(),
        None => set.graph().resolve(target)?.to_owned(),
    };
    // A batched step part-way through is resolved like a failed mark: its checkpoint
    // carries the step's head change, and the checksum of what its batches ran.
    let batched = checkpoints.into_iter().find(|c| c.revision == id);
    let mark = match &batched {
        Some(c) => FailedMark {
            revision: c.revision.clone(),
            direction: c.direction,
            remove_heads: c.remove_heads.clone(),
            add_heads: c.add_heads.clone(),
            statement: 0,
            error: String::new(),
            sqlstate: None,
            failed_at: c.updated_at,
        },
        None => failed
            .into_iter()
            .find(|f| f.revision == id)
            .ok_or_else(|| NotFailed(id.clone()))?,
    };
    Ok((id, mark, batched))
}

/// The heads after `mark`'s step, had it completed.
pub(super) fn moved_heads(heads: &[String], mark: &FailedMark) -> Vec<String> {
    let mut new = heads.to_vec();
    new.retain(|h| !mark.remove_heads.contains(h));
    for h in &mark.add_heads {
        if !new.contains(h) {
            new.push(h.clone());
        }
    }
    new.sort();
    new
}

/// The checksum a resolution records: what ran, if known; for `applied` without a record,
/// the files as they are now (with a warning); nothing for `rolled-back`.
pub(super) fn recorded_checksum(
    id: &str,
    state: Resolution,
    ran: Option<String>,
    files: Option<&revision::Artifact>,
) -> anyhow::Result<String> {
    Ok(match (state, ran, files) {
        (Resolution::Applied, Some(ran), _) => ran,
        (Resolution::Applied, None, Some(files)) => {
            tracing::warn!(
                "revision {id}: no record of what ran (wasmig was killed before it could write one); recording the checksum of its files as they are now"
            );
            files.checksum()
        }
        (Resolution::Applied, None, None) => {
            return Err(ConfigError::new(format!(
                "revision {id}: its files cannot be read and no record of what ran exists, so it cannot be recorded as applied with a checksum; restore its files and resolve again"
            ))
            .into());
        }
        (Resolution::RolledBack, _, _) => String::new(),
    })
}
