//! The checksum memo: what each applied revision's files hashed to, beside what the file
//! system said of those files at the time (device, inode, size, modification and change
//! times), so that a run does not reread and rehash an applied revision whose files nothing
//! has written since. Git's index makes `git status` fast the same way.
//!
//! **Why the times can be trusted.** The kernel sets a file's change time (ctime) to the
//! current time whenever the file is written, truncated, renamed, linked or its times are set:
//! no system call sets it to a chosen value (`touch -d` sets the modification time, and the
//! change time to now). So a file whose device, inode, size and both times are as recorded
//! has not been written since, short of root setting the clock back. Two more guards:
//! - **Files changed just before they were hashed** (git's "racy" files): times have a
//!   granularity (a few milliseconds on Linux), so a write right after wasmig looked could
//!   leave them as they were. A file is recorded only when both its times are at least
//!   [`SETTLED`] older than the moment wasmig looked; one changed more recently is hashed
//!   again by the next run, and recorded then.
//! - **A forged memo**: the memo lives in the compile cache's directory, which may be in the
//!   checkout. It ends with a tag under the per-user cache key ([`wasmig_sandbox::Sealer`]),
//!   over its name (which names the project's directory) and its text; one that does not
//!   verify is ignored, and every file is hashed.
//!
//! The memo is used only with the compile cache (not with `--no-cache`, nor in untrusted
//! mode), and never by `wasmig check`, which rereads every file.
//!
//! Not here: the checksums, and what a mismatch means (`integrity`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmig_sandbox::Sealer;

use crate::config::Project;

/// How long before wasmig looks a file must have last changed to be recorded.
pub const SETTLED: Duration = Duration::from_secs(2);

/// The largest memo read (one line per applied revision: a few hundred bytes each).
const MAX_MEMO: u64 = 32 * 1024 * 1024;

/// The kind of file the tag says this is, for [`Sealer`] (a test signs a memo with it).
pub const LABEL: &str = "wasmig checksum memo 1";

/// What the file system says of a file: equal stamps, an unwritten file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    /// Modification time: seconds and nanoseconds since the epoch.
    mtime: (i64, i64),
    /// Change time (the inode's): seconds and nanoseconds since the epoch.
    ctime: (i64, i64),
}

impl Stamp {
    /// `path`'s stamp, symbolic links followed (the file a confined read opens); `None` when
    /// it cannot be read or is not a regular file.
    fn of(path: &Path) -> Option<Stamp> {
        Stamp::from_metadata(&std::fs::metadata(path).ok()?)
    }

    /// The stamp in `meta`; `None` for anything but a regular file.
    fn from_metadata(meta: &std::fs::Metadata) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt as _;
        meta.is_file().then(|| Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// Whether both times are at least [`SETTLED`] before `looked` (see the module's doc).
    fn settled_at(&self, looked: SystemTime) -> bool {
        let Ok(since_epoch) = looked.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let Some(limit) = since_epoch.checked_sub(SETTLED) else {
            return false;
        };
        let limit = (limit.as_secs() as i64, i64::from(limit.subsec_nanos()));
        self.mtime < limit && self.ctime < limit
    }
}

/// One revision's entry: its checksum and its files' stamps then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    checksum: String,
    files: Vec<(String, Stamp)>,
}

/// The files' stamps taken before they were read ([`Memo::before_reading`]).
pub struct Looked {
    at: SystemTime,
    stamps: Vec<Stamp>,
}

/// The memo of one project, read at the start of a verification and written at its end
/// when it changed.
pub struct Memo {
    path: PathBuf,
    /// The project, whose directory the cache directory may lie in.
    root: PathBuf,
    sealer: Sealer,
    /// As read (verified), by revision.
    read: BTreeMap<String, Entry>,
    /// What this run found still true or recorded: what is written.
    kept: BTreeMap<String, Entry>,
    /// How many revisions the memo vouched for in this run.
    pub used: usize,
}

impl Memo {
    /// The project's memo (empty when there is none yet, or it does not verify); `None`
    /// when the cache key is unusable, in which case every file is hashed.
    pub fn open(project: &Project) -> Option<Memo> {
        let sealer = match Sealer::new(&project.root) {
            Ok(sealer) => sealer,
            Err(e) => {
                tracing::debug!("checksum memo not used: {e}");
                return None;
            }
        };
        let root = project
            .root
            .canonicalize()
            .unwrap_or_else(|_| project.root.clone());
        let digest = Sha256::digest(root.as_os_str().as_encoded_bytes());
        let path = project
            .cache_dir()
            .join(format!("checksums-{}.json", hex::encode(&digest[..8])));
        let read = match read_sealed(&sealer, &path) {
            Ok(read) => read,
            Err(why) => {
                tracing::debug!("checksum memo {} not used: {why}", path.display());
                BTreeMap::new()
            }
        };
        Some(Memo {
            path,
            root: project.root.clone(),
            sealer,
            read,
            kept: BTreeMap::new(),
            used: 0,
        })
    }

    /// Whether the memo vouches that `revision`'s `files` hash to `checksum`: it recorded
    /// that checksum for them, and each still has the stamp it had then.
    pub fn vouches(&mut self, revision: &str, files: &[PathBuf], checksum: &str) -> bool {
        let Some(entry) = self.read.get(revision) else {
            return false;
        };
        let same = entry.checksum == checksum
            && entry.files.len() == files.len()
            && entry.files.iter().zip(files).all(|((name, stamp), path)| {
                path.to_str() == Some(name.as_str()) && Stamp::of(path) == Some(*stamp)
            });
        if same {
            self.kept.insert(revision.to_owned(), entry.clone());
            self.used += 1;
        }
        same
    }

    /// The files' stamps before they are read, for [`Memo::record`].
    pub fn before_reading(files: &[PathBuf]) -> Option<Looked> {
        let at = SystemTime::now();
        let stamps = files.iter().map(|f| Stamp::of(f)).collect::<Option<_>>()?;
        Some(Looked { at, stamps })
    }

    /// Records that `files`, read after `looked`, hash to `checksum`. `read` is what the
    /// file system said of the descriptors the bytes were read from: only when it, the
    /// paths before the read and the paths after it all agree were the bytes those of the
    /// stamped files (a path can be made to name another file between a stat and an open),
    /// and only settled files are recorded (see the module's doc).
    pub fn record(
        &mut self,
        revision: &str,
        files: &[PathBuf],
        looked: Looked,
        read: &[std::fs::Metadata],
        checksum: &str,
    ) {
        let read: Option<Vec<Stamp>> = read.iter().map(Stamp::from_metadata).collect();
        let now: Option<Vec<Stamp>> = files.iter().map(|f| Stamp::of(f)).collect();
        if read.as_ref() != Some(&looked.stamps)
            || now.as_ref() != Some(&looked.stamps)
            || !looked.stamps.iter().all(|s| s.settled_at(looked.at))
        {
            return;
        }
        let Some(names) = files
            .iter()
            .map(|f| f.to_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
        else {
            return;
        };
        self.kept.insert(
            revision.to_owned(),
            Entry {
                checksum: checksum.to_owned(),
                files: names.into_iter().zip(looked.stamps).collect(),
            },
        );
    }

    /// Writes the memo if this run changed what it holds (an entry recorded, or one no longer
    /// true or applied dropped). A memo that cannot be written is only logged.
    pub fn save(&self) {
        if self.kept == self.read {
            return;
        }
        if let Err(e) = self.write() {
            tracing::debug!("checksum memo {} not written: {e}", self.path.display());
        }
    }

    fn write(&self) -> anyhow::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        // A cache directory in the project that links out of it must not make wasmig write
        // there.
        let dir = if dir.starts_with(&self.root) {
            crate::confined::create_dir_all(&self.root, dir)?
        } else {
            std::fs::create_dir_all(dir)?;
            dir.to_path_buf()
        };
        let name = file_name(&self.path);
        let mut text = serde_json::to_string(&self.kept)?;
        let tag = self.sealer.tag(LABEL, &name, text.as_bytes());
        text.push('\n');
        text.push_str(&hex::encode(tag));
        text.push('\n');
        // A new file renamed over the old: never a torn memo, and never writing through a
        // link someone left at the memo's name.
        let tmp = dir.join(format!(".{name}.{}", uuid::Uuid::new_v4().simple()));
        let written = (|| {
            use std::io::Write as _;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(&tmp)?.write_all(text.as_bytes())?;
            std::fs::rename(&tmp, dir.join(&name))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(written?)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The entries of the memo at `path`, if its tag verifies; an empty memo if there is none.
fn read_sealed(sealer: &Sealer, path: &Path) -> Result<BTreeMap<String, Entry>, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    // Not through a link, and not blocking on a FIFO left at its name.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.to_string()),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() || meta.len() > MAX_MEMO {
        return Err("not a regular file of a memo's size".into());
    }
    let mut text = String::new();
    file.take(MAX_MEMO)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    let (body, tag) = text
        .trim_end_matches('\n')
        .rsplit_once('\n')
        .ok_or("no tag")?;
    let tag = hex::decode(tag).map_err(|_| "a tag that is not hexadecimal")?;
    if !sealer.verifies(LABEL, &file_name(path), body.as_bytes(), &tag) {
        return Err("its tag does not verify under this user's cache key".into());
    }
    serde_json::from_str(body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(mtime: i64, ctime: i64) -> Stamp {
        Stamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime: (mtime, 0),
            ctime: (ctime, 0),
        }
    }

    #[test]
    fn bytes_read_from_another_file_than_the_one_stamped_are_not_recorded() {
        let dir = std::env::temp_dir().join(format!("wasmig-memo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (stamped, other) = (dir.join("up.sql"), dir.join("decoy.sql"));
        std::fs::write(&stamped, "CREATE TABLE t (x int);").unwrap();
        std::fs::write(&other, "CREATE TABLE t (x int);").unwrap();
        let mut memo = Memo {
            path: dir.join("checksums-test.json"),
            root: dir.clone(),
            sealer: Sealer::new(&dir).unwrap(),
            read: BTreeMap::new(),
            kept: BTreeMap::new(),
            used: 0,
        };
        let files = [stamped.clone()];
        // Looked at as if long after the files settled.
        let looked = || Looked {
            at: SystemTime::now() + Duration::from_secs(60),
            stamps: vec![Stamp::of(&stamped).unwrap()],
        };
        // A path swapped between the stat and the open: the descriptor read is the decoy.
        let decoy = [std::fs::metadata(&other).unwrap()];
        memo.record("a1", &files, looked(), &decoy, "sum");
        assert!(memo.kept.is_empty(), "recorded from another file's bytes");
        let real = [std::fs::metadata(&stamped).unwrap()];
        memo.record("a1", &files, looked(), &real, "sum");
        assert_eq!(memo.kept["a1"].checksum, "sum");
        // The memo vouches only for the checksum it recorded.
        memo.read = memo.kept.clone();
        assert!(!memo.vouches("a1", &files, "other"));
        assert!(memo.vouches("a1", &files, "sum"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_changed_within_the_settling_time_is_not_settled() {
        let looked = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert!(stamp(997, 997).settled_at(looked));
        assert!(!stamp(999, 997).settled_at(looked), "modified 1 s before");
        assert!(!stamp(997, 999).settled_at(looked), "changed 1 s before");
        assert!(
            !stamp(997, 998).settled_at(looked),
            "changed exactly 2 s before"
        );
        assert!(!stamp(997, 1_500).settled_at(looked), "changed after");
    }
}
