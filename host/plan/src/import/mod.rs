//! Another migration tool's directory and history table, read as that tool reads them
//! (`wasmig import --from FORMAT DIR [--adopt]`): which files are migrations, in what order,
//! what each runs up and down and whether in a transaction, and which of them the tool's
//! history table says it applied.
//!
//! One file per tool owns its rules: [`diesel`], [`sqlx`], [`golang_migrate`], [`dbmate`],
//! [`goose`], [`flyway`], [`refinery`]; [`transaction`] what every tool's SQL shares (a file's
//! own `BEGIN` ... `COMMIT`, statements PostgreSQL runs only outside a transaction). Pure data
//! in both directions: the caller reads the files the tool reads ([`Format::reads`]) and lists
//! them ([`SourceFile`]), splits scripts into statements with the database's parser
//! ([`Split`]), and hands over the history table's rows as text ([`Row`]); nothing here
//! touches a file system or a database.
//!
//! Not here: writing revisions (the `wasmig` library's `scaffold`), reading the table and
//! recording the adoption under the migration lock (its `migrator`).

pub mod dbmate;
pub mod diesel;
pub mod flyway;
pub mod golang_migrate;
pub mod goose;
pub mod refinery;
pub mod sqlx;
pub mod transaction;

pub use transaction::Split;

use std::collections::HashSet;
use std::fmt;

use crate::error::ConfigError;
use crate::manifest::TransactionMode;

/// A tool whose migrations wasmig imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Diesel: `VERSION_name/up.sql`, `down.sql`, `metadata.toml`.
    Diesel,
    /// sqlx: `VERSION_desc.sql`, or `.up.sql` and `.down.sql`.
    Sqlx,
    /// golang-migrate: `VERSION_title.up.sql`, `.down.sql`.
    GolangMigrate,
    /// dbmate: `VERSION_name.sql` with `-- migrate:up` and `-- migrate:down`.
    Dbmate,
    /// goose: `VERSION_name.sql` with `-- +goose Up` and `-- +goose Down`.
    Goose,
    /// Flyway: `V<version>__desc.sql`, `U<version>__desc.sql` (undo).
    Flyway,
    /// refinery: `V{n}__name.sql`, `U{n}__name.sql`.
    Refinery,
}

impl Format {
    /// Every format, in the order the CLI lists them.
    pub const ALL: [Format; 7] = [
        Format::Diesel,
        Format::Sqlx,
        Format::GolangMigrate,
        Format::Dbmate,
        Format::Goose,
        Format::Flyway,
        Format::Refinery,
    ];

    /// The name on the command line (`--from diesel`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Diesel => "diesel",
            Format::Sqlx => "sqlx",
            Format::GolangMigrate => "golang-migrate",
            Format::Dbmate => "dbmate",
            Format::Goose => "goose",
            Format::Flyway => "flyway",
            Format::Refinery => "refinery",
        }
    }

    /// Whether the tool looks for migrations in the directory at `path` (relative to the
    /// source directory, `/`-separated): Diesel in the directories directly in it, Flyway and
    /// refinery in all below it, the others in none.
    pub fn descends(self, path: &str) -> bool {
        match self {
            Format::Diesel => !path.contains('/') && !path.starts_with('.'),
            Format::Flyway | Format::Refinery => true,
            Format::Sqlx | Format::GolangMigrate | Format::Dbmate | Format::Goose => false,
        }
    }

    /// What the tool reads of the file (or other entry that is no directory) at `path`, in a
    /// directory it looks into ([`Format::descends`]): a caller reads (and may refuse) only
    /// those, and passes the ones named as [`SourceFile`]s to [`Format::parse`].
    pub fn reads(self, path: &str) -> Reads {
        match self {
            Format::Diesel => diesel::reads(path),
            Format::Sqlx => sqlx::reads(path),
            Format::GolangMigrate => golang_migrate::reads(path),
            Format::Dbmate => dbmate::reads(path),
            Format::Goose => goose::reads(path),
            Format::Flyway => flyway::reads(path),
            Format::Refinery => refinery::reads(path),
        }
    }

    /// Reads a migration directory's files as this tool does, in the tool's order. `split`
    /// splits a script into statements as the database's parser does (the tools' rules for
    /// transactions depend on them; see [`transaction`]).
    ///
    /// A file whose statements are wrapped whole in one plain `BEGIN` ... `COMMIT` (the tool
    /// opening no transaction of its own, or the author adding one) is taken without those
    /// two statements and runs in one transaction ([`SourceMigration::transaction_cut`]):
    /// wasmig runs each revision in its own transaction and refuses transaction control in
    /// it.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file the tool would refuse too (or that wasmig cannot
    /// reproduce: a goose Go migration, a Flyway repeatable or placeholder, transaction
    /// control other than one plain `BEGIN` ... `COMMIT` block), and what to do.
    pub fn parse(
        self,
        files: &[SourceFile],
        split: &Split,
    ) -> Result<Vec<SourceMigration>, ConfigError> {
        self.parse_with(files, split, ToolOptions::default())
    }

    /// [`Format::parse`] for a tool run with `options`.
    ///
    /// # Errors
    /// As [`Format::parse`]; with golang-migrate's `x-multi-statement`, also a file the tool
    /// would cut inside a statement.
    pub fn parse_with(
        self,
        files: &[SourceFile],
        split: &Split,
        options: ToolOptions,
    ) -> Result<Vec<SourceMigration>, ConfigError> {
        if options.multi_statement && self != Format::GolangMigrate {
            return Err(ConfigError::new(format!(
                "--x-multi-statement is golang-migrate's option (its database URL's `x-multi-statement=true`); {self} has none: remove it"
            )));
        }
        let mut migrations = match self {
            Format::Diesel => diesel::parse(files)?,
            Format::Sqlx => sqlx::parse(files)?,
            Format::GolangMigrate => golang_migrate::parse(files, split, options.multi_statement)?,
            Format::Dbmate => dbmate::parse(files)?,
            Format::Goose => goose::parse(files, split)?,
            Format::Flyway => flyway::parse(files, split)?,
            Format::Refinery => refinery::parse(files)?,
        };
        if matches!(
            self,
            Format::Diesel | Format::Sqlx | Format::Dbmate | Format::Refinery
        ) {
            // Without a transaction these tools send a script as one query, which
            // PostgreSQL runs in one implicit transaction when it holds several statements:
            // only a script of one statement that refuses a block runs outside a
            // transaction. Each direction on its own.
            for m in &mut migrations {
                m.up_no_transaction = m.up_no_transaction && transaction::runs_alone(&m.up, split);
                m.down_no_transaction = m.down_no_transaction
                    && m.down
                        .as_deref()
                        .is_some_and(|d| transaction::runs_alone(d, split));
            }
        }
        for m in &mut migrations {
            self.unwrap_transaction(m, split)?;
        }
        let mut seen = HashSet::new();
        for m in &migrations {
            if !seen.insert(m.version.as_str()) {
                return Err(ConfigError::new(format!(
                    "{}: two migrations have version {} ({}); {} refuses that too: renumber one",
                    self.name(),
                    m.version,
                    m.source,
                    self.name()
                )));
            }
        }
        Ok(migrations)
    }

    /// Cuts a plain `BEGIN` ... `COMMIT` around a migration's up or down script, which then
    /// runs in one transaction as the tool ran it (whatever the tool's own setting for that
    /// script said: goose's NO TRANSACTION, dbmate's transaction:false...); refuses other
    /// transaction control.
    fn unwrap_transaction(self, m: &mut SourceMigration, split: &Split) -> Result<(), ConfigError> {
        let refuse = |file: &str, direction: &str, why: String| {
            ConfigError::new(format!("{self}: {file} ({direction}): {why}"))
        };
        let up = transaction::unwrap(&m.up, split).map_err(|why| refuse(&m.up_file, "up", why))?;
        let down = match &m.down {
            Some(down) => transaction::unwrap(down, split)
                .map_err(|why| refuse(m.down_file.as_deref().unwrap_or(&m.up_file), "down", why))?,
            None => transaction::Control::None,
        };
        if let transaction::Control::Wrapped(up) = up {
            m.up = up;
            m.up_no_transaction = false;
            m.transaction_cut = true;
        }
        if let transaction::Control::Wrapped(down) = down {
            m.down = Some(down);
            m.down_no_transaction = false;
            m.transaction_cut = true;
        }
        Ok(())
    }

    /// The tool's history table and the query that reads it (the same text on PostgreSQL
    /// and SQLite).
    pub fn history(self) -> History {
        let (table, query) = match self {
            Format::Diesel => (diesel::TABLE, diesel::QUERY),
            Format::Sqlx => (sqlx::TABLE, sqlx::QUERY),
            Format::GolangMigrate => (golang_migrate::TABLE, golang_migrate::QUERY),
            Format::Dbmate => (dbmate::TABLE, dbmate::QUERY),
            Format::Goose => (goose::TABLE, goose::QUERY),
            Format::Flyway => (flyway::TABLE, flyway::QUERY),
            Format::Refinery => (refinery::TABLE, refinery::QUERY),
        };
        History { table, query }
    }

    /// How many of `migrations` (the tool's order) its history table says are applied:
    /// always a leading run of them, or a refusal.
    ///
    /// # Errors
    /// [`AdoptRefused`]: the state is dirty or failed, has a gap, names a migration the
    /// directory lacks, or a recorded checksum differs from the file's.
    pub fn applied(
        self,
        migrations: &[SourceMigration],
        rows: &[Row],
    ) -> Result<usize, AdoptRefused> {
        let table = self.history().table;
        let applied = match self {
            Format::Diesel | Format::Dbmate | Format::Refinery => versions(table, rows)?,
            Format::Sqlx => sqlx::applied(rows)?,
            Format::GolangMigrate => return golang_migrate::applied(migrations, rows),
            Format::Goose => goose::applied(rows)?,
            Format::Flyway => flyway::applied(migrations, rows)?,
        };
        leading(table, migrations, &applied)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
                format!("unknown format `{s}`; one of {}", names.join(", "))
            })
    }
}

/// What a tool reads of one entry of its migration directory ([`Format::reads`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Nothing: the tool skips it (not a migration by its name).
    Nothing,
    /// Its name only: a goose Go migration or a refinery Rust one (refused by name), a file
    /// beside a Diesel migration's `up.sql`.
    Name,
    /// Its contents.
    Contents,
    /// Its contents if it is a regular file, links followed; else nothing (sqlx skips
    /// anything else).
    ContentsIfFile,
}

/// One file of the source directory.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Its path relative to the directory, `/`-separated.
    pub path: String,
    /// Its bytes (none for a file the tool reads by name only, [`Reads::Name`]).
    pub bytes: Vec<u8>,
}

impl SourceFile {
    /// The file name (the last path component).
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// Whether the file sits directly in the directory.
    pub fn is_top_level(&self) -> bool {
        !self.path.contains('/')
    }

    /// Its text.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file when it is not UTF-8.
    pub fn text(&self) -> Result<&str, ConfigError> {
        std::str::from_utf8(&self.bytes).map_err(|e| {
            ConfigError::new(format!(
                "{} is not UTF-8 ({e}); convert it, as the tool reads it as text",
                self.path
            ))
        })
    }
}

/// How the source tool was run, where its directory does not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolOptions {
    /// golang-migrate's `x-multi-statement` (a URL option of its PostgreSQL driver): each
    /// file is cut after every `;` and each piece sent on its own, autocommitted.
    pub multi_statement: bool,
}

/// One migration as the source tool runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMigration {
    /// Its version as the tool records it in its history table (normalised where the tool
    /// normalises: Diesel drops dashes, Flyway `_` becomes `.`).
    pub version: String,
    /// Its name or description.
    pub name: String,
    /// The file or directory it came from, relative to the source directory.
    pub source: String,
    /// The file `up` came from (for dbmate and goose, the one file that holds both).
    pub up_file: String,
    /// The file `down` came from.
    pub down_file: Option<String>,
    /// What runs up, byte for byte what the tool runs (but a `BEGIN` ... `COMMIT` around
    /// it, see [`SourceMigration::transaction_cut`]).
    pub up: String,
    /// What runs down (`None`: the tool has no down migration for it).
    pub down: Option<String>,
    /// The tool runs `up` outside a transaction.
    pub up_no_transaction: bool,
    /// The tool runs `down` outside a transaction.
    pub down_no_transaction: bool,
    /// A file wrapped its statements in its own `BEGIN` ... `COMMIT`, cut out of `up` or
    /// `down`: that script runs in one transaction, wasmig's own.
    pub transaction_cut: bool,
    /// The checksum the tool records for it, to compare with its history table.
    pub checksum: Option<ToolChecksum>,
}

impl SourceMigration {
    /// The revision's `transaction`: how the tool runs `up`.
    pub fn transaction(&self) -> TransactionMode {
        mode(self.up_no_transaction)
    }

    /// The revision's `downgrade_transaction`: how the tool runs `down`, where that
    /// differs from `up`.
    pub fn downgrade_transaction(&self) -> Option<TransactionMode> {
        let down = mode(self.down_no_transaction);
        (self.down.is_some() && down != self.transaction()).then_some(down)
    }
}

/// `none` for a script the tool runs outside a transaction.
fn mode(no_transaction: bool) -> TransactionMode {
    if no_transaction {
        TransactionMode::None
    } else {
        TransactionMode::PerMigration
    }
}

/// A checksum as a tool records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChecksum {
    /// sqlx: SHA-384 of the file, hex (lowercase).
    Sha384(String),
    /// Flyway: CRC32 of the file's lines, as a signed 32-bit integer.
    Crc32(i32),
}

impl fmt::Display for ToolChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolChecksum::Sha384(hex) => write!(f, "SHA-384 {hex}"),
            ToolChecksum::Crc32(n) => write!(f, "CRC32 {n}"),
        }
    }
}

/// A tool's history table: its name and the query that reads the rows `applied` expects.
#[derive(Debug, Clone, Copy)]
pub struct History {
    /// The table.
    pub table: &'static str,
    /// The `SELECT`.
    pub query: &'static str,
}

/// One row of a history table, each column as text: integers in decimal, booleans as
/// `true`/`false` (SQLite's `1`/`0` are accepted), bytes as lowercase hex, NULL as `None`.
pub type Row = Vec<Option<String>>;

/// Why the old tool's state cannot be adopted. Nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdoptRefused {
    /// The tool marked a migration dirty or failed: it stopped part-way.
    #[error(
        "{table} records migration {version} as {state}: the old tool stopped part-way through it; finish or undo it with that tool (or fix the database and the row by hand), then adopt"
    )]
    Dirty {
        /// The history table.
        table: &'static str,
        /// The migration.
        version: String,
        /// `dirty` or `failed`.
        state: &'static str,
    },
    /// A later migration is applied and an earlier one is not.
    #[error(
        "{table} records migration {applied} as applied but not the earlier {missing}: a linear history cannot hold that gap; apply {missing} with the old tool (or check whether it is needed), then adopt"
    )]
    Gap {
        /// The history table.
        table: &'static str,
        /// The earlier migration not applied.
        missing: String,
        /// The later migration applied.
        applied: String,
    },
    /// The table records a migration the directory lacks.
    #[error(
        "{table} records migration {version} as applied, but the source directory has no such migration: import from the directory the database was migrated from"
    )]
    Unknown {
        /// The history table.
        table: &'static str,
        /// The migration.
        version: String,
    },
    /// A migration's file changed since the tool applied it.
    #[error(
        "{table} records checksum {recorded} for migration {version}, but {file} now has {current}: the file changed since the old tool applied it; restore the file as it was applied, then adopt"
    )]
    Checksum {
        /// The history table.
        table: &'static str,
        /// The migration.
        version: String,
        /// Its file.
        file: String,
        /// What the table records.
        recorded: String,
        /// What the file hashes to.
        current: String,
    },
    /// A row the tool wrote that wasmig cannot read as that tool.
    #[error("{table}: {what}")]
    Unreadable {
        /// The history table.
        table: &'static str,
        /// What is wrong with it.
        what: String,
    },
}

/// One applied migration named by a history table, with what it records of its checksum.
#[derive(Debug, Clone)]
pub(crate) struct AppliedRow {
    pub(crate) version: String,
    pub(crate) checksum: Option<ToolChecksum>,
}

impl AppliedRow {
    pub(crate) fn version(version: String) -> Self {
        AppliedRow {
            version,
            checksum: None,
        }
    }
}

/// The first column of each row: the applied versions of a table that lists them. Refuses
/// a row without one (NULL): the tool never writes it, so the table is not what it seems.
pub(crate) fn versions(table: &'static str, rows: &[Row]) -> Result<Vec<AppliedRow>, AdoptRefused> {
    rows.iter()
        .map(|r| column(table, r, 0, "version").map(|v| AppliedRow::version(v.to_owned())))
        .collect()
}

/// The up and down files of one version, for tools that keep them apart.
#[derive(Default)]
pub(crate) struct Pair<'a> {
    /// The up file and the name its file name gives.
    pub(crate) up: Option<(&'a SourceFile, &'a str)>,
    /// The down file.
    pub(crate) down: Option<&'a SourceFile>,
}

impl<'a> Pair<'a> {
    /// Takes `file` as the up file (named `name`) or, for `None`, the down file; `false`
    /// when the pair already had one.
    pub(crate) fn put(&mut self, file: &'a SourceFile, up_name: Option<&'a str>) -> bool {
        match up_name {
            Some(name) => self.up.replace((file, name)).is_none(),
            None => self.down.replace(file).is_none(),
        }
    }
}

/// The applied migrations as a leading run of `migrations`: refuses a version recorded
/// twice, one the directory lacks, a gap, and a checksum that differs from the file's.
fn leading(
    table: &'static str,
    migrations: &[SourceMigration],
    applied: &[AppliedRow],
) -> Result<usize, AdoptRefused> {
    let mut seen = HashSet::new();
    if let Some(twice) = applied.iter().find(|a| !seen.insert(a.version.as_str())) {
        return Err(AdoptRefused::Unreadable {
            table,
            what: format!(
                "version {} is recorded twice, which the tool never does (its table has a primary key on the version); the table was changed by hand or restored without its key: delete the extra row, then adopt",
                twice.version
            ),
        });
    }
    let mut count = 0;
    for row in applied {
        let Some(index) = migrations.iter().position(|m| m.version == row.version) else {
            return Err(AdoptRefused::Unknown {
                table,
                version: row.version.clone(),
            });
        };
        let m = &migrations[index];
        if let (Some(recorded), Some(current)) = (&row.checksum, &m.checksum)
            && recorded != current
        {
            return Err(AdoptRefused::Checksum {
                table,
                version: m.version.clone(),
                file: m.source.clone(),
                recorded: recorded.to_string(),
                current: current.to_string(),
            });
        }
        count = count.max(index + 1);
    }
    // Each version once, each in `migrations[..count]`: fewer rows than `count` leave one
    // of those out.
    let missing = migrations[..count]
        .iter()
        .find(|m| !applied.iter().any(|a| a.version == m.version));
    if let (Some(missing), Some(last)) = (missing, count.checked_sub(1)) {
        return Err(AdoptRefused::Gap {
            table,
            missing: missing.version.clone(),
            applied: migrations[last].version.clone(),
        });
    }
    Ok(count)
}

/// A column of a history row as text, or a refusal naming the table.
pub(crate) fn column<'a>(
    table: &'static str,
    row: &'a Row,
    index: usize,
    name: &str,
) -> Result<&'a str, AdoptRefused> {
    row.get(index)
        .and_then(|c| c.as_deref())
        .ok_or_else(|| AdoptRefused::Unreadable {
            table,
            what: format!(
                "a row has no {name} (NULL), which the tool never writes; the table was changed by hand: fix or delete the row, then adopt"
            ),
        })
}

/// A boolean column (`true`/`t`/`1`).
pub(crate) fn is_true(text: &str) -> bool {
    matches!(text, "true" | "t" | "1")
}

/// `text` without a leading UTF-8 byte-order mark.
pub(crate) fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A source directory from `(path, text)` pairs.
    pub(crate) fn dir(files: &[(&str, &str)]) -> Vec<SourceFile> {
        files
            .iter()
            .map(|(path, text)| SourceFile {
                path: (*path).to_owned(),
                bytes: text.as_bytes().to_vec(),
            })
            .collect()
    }

    /// Rows from text cells.
    pub(crate) fn rows(rows: &[&[Option<&str>]]) -> Vec<Row> {
        rows.iter()
            .map(|r| r.iter().map(|c| c.map(str::to_owned)).collect())
            .collect()
    }

    fn migration(version: &str) -> SourceMigration {
        SourceMigration {
            version: version.into(),
            name: String::new(),
            source: format!("{version}.sql"),
            up_file: format!("{version}.sql"),
            down_file: None,
            up: String::new(),
            down: None,
            up_no_transaction: false,
            down_no_transaction: false,
            transaction_cut: false,
            checksum: None,
        }
    }

    #[test]
    fn applied_migrations_must_be_a_leading_run_of_known_ones() {
        let all: Vec<_> = ["1", "2", "3"].into_iter().map(migration).collect();
        let rows = |v: &[&str]| -> Vec<AppliedRow> {
            v.iter().map(|s| AppliedRow::version((*s).into())).collect()
        };
        assert_eq!(leading("t", &all, &rows(&[])), Ok(0));
        assert_eq!(leading("t", &all, &rows(&["2", "1"])), Ok(2));
        assert_eq!(
            leading("t", &all, &rows(&["1", "3"])),
            Err(AdoptRefused::Gap {
                table: "t",
                missing: "2".into(),
                applied: "3".into()
            })
        );
        assert_eq!(
            leading("t", &all, &rows(&["1", "9"])),
            Err(AdoptRefused::Unknown {
                table: "t",
                version: "9".into()
            })
        );
    }

    #[test]
    fn a_version_recorded_twice_or_null_is_refused_and_never_panics() {
        let all: Vec<_> = ["0", "1"].into_iter().map(migration).collect();
        for format in [
            Format::Diesel,
            Format::Dbmate,
            Format::Refinery,
            Format::Sqlx,
        ] {
            let twice = rows(&[
                &[Some("0"), Some("true"), Some("ab")],
                &[Some("0"), Some("true"), Some("ab")],
            ]);
            let err = format.applied(&all, &twice).unwrap_err();
            assert!(
                matches!(err, AdoptRefused::Unreadable { .. })
                    && err.to_string().contains("version 0")
                    && err.to_string().contains("twice"),
                "{format}: {err}"
            );
            let null = rows(&[
                &[Some("0"), Some("true"), Some("ab")],
                &[None, Some("true"), Some("ab")],
            ]);
            let err = format.applied(&all, &null).unwrap_err();
            assert!(
                matches!(err, AdoptRefused::Unreadable { .. })
                    && err.to_string().starts_with(format.history().table)
                    && err.to_string().contains("no version"),
                "{format}: {err}"
            );
        }
    }

    #[test]
    fn a_recorded_checksum_must_match_the_file() {
        let mut m = migration("1");
        m.checksum = Some(ToolChecksum::Crc32(5));
        let row = AppliedRow {
            version: "1".into(),
            checksum: Some(ToolChecksum::Crc32(6)),
        };
        let err = leading("flyway_schema_history", &[m], &[row]).unwrap_err();
        assert!(
            err.to_string()
                .contains("records checksum CRC32 6 for migration 1, but 1.sql now has CRC32 5"),
            "{err}"
        );
    }

    #[test]
    fn only_the_files_a_tool_reads_are_read() {
        use Reads::*;
        for (format, path, reads) in [
            (Format::Sqlx, "1_a.sql", ContentsIfFile),
            (Format::Sqlx, "docs/1_a.sql", Nothing),
            (Format::Sqlx, "dump.bin", Nothing),
            (Format::GolangMigrate, "1_a.up.sql", Contents),
            (Format::GolangMigrate, "1_a.sql", Nothing),
            (Format::Dbmate, "1_a.sql", Contents),
            (Format::Dbmate, "schema.sql", Nothing),
            (Format::Goose, "00001_a.sql", Contents),
            (Format::Goose, "00002_b.go", Name),
            (Format::Goose, "main_test.go", Nothing),
            (Format::Goose, "sub/1_a.sql", Nothing),
            (Format::Diesel, "diesel.toml", Nothing),
            (Format::Diesel, "1_a/up.sql", Contents),
            (Format::Diesel, "1_a/metadata.toml", Contents),
            (Format::Diesel, "1_a/notes.md", Name),
            (Format::Diesel, "1_a/sub/up.sql", Nothing),
            (Format::Flyway, "sub/V1__a.sql", Contents),
            (Format::Flyway, "sub/V1__a.sql.conf", Contents),
            (Format::Flyway, "flyway.conf", Nothing),
            (Format::Flyway, "é.sql", Nothing),
            (Format::Refinery, "sub/V1__a.sql", Contents),
            (Format::Refinery, "V2__code.rs", Name),
            (Format::Refinery, "docs/dump.bin", Nothing),
        ] {
            assert_eq!(format.reads(path), reads, "{format} {path}");
        }
        assert!(Format::Diesel.descends("1_a") && !Format::Diesel.descends(".git"));
        assert!(!Format::Diesel.descends("1_a/sub") && !Format::Sqlx.descends("docs"));
        assert!(Format::Flyway.descends("a/b") && Format::Refinery.descends("a"));
    }

    #[test]
    fn formats_are_named_as_on_the_command_line() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>(), Ok(f));
        }
        assert!(
            "liquibase"
                .parse::<Format>()
                .unwrap_err()
                .contains("golang-migrate")
        );
    }
}
