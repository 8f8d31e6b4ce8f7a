//! A fuzz test of the refusal of transaction control, against the real server: scripts
//! made of quotes, escape strings, dollar quotes, comments, backslashes, semicolons and
//! transaction keywords, sent as a migration sends them (`batch`, which `pg_parse` judges),
//! half of them with `standard_conforming_strings` switched off by a `set_config` the parser
//! cannot name. Whatever the check let through and the server ran, the transaction must
//! still be the one begun: a `COMMIT`, `ROLLBACK` or `BEGIN` the server executed without
//! the check refusing it first is a failure, printed with the seed that reproduces it
//! (`WASMIG_FUZZ_SEED`; `WASMIG_FUZZ_CASES` sets how many scripts, 3,000 by default).

use super::*;

/// Pieces scripts are made of: the characters where readers of SQL disagree, and the
/// statements that must never run.
const PIECES: &[&str] = &[
    "'",
    "'",
    "E'",
    "\\",
    "\\'",
    "''",
    "$$",
    "$a$",
    "--",
    "/*",
    "*/",
    "\n",
    ";",
    ";",
    " ",
    " ",
    "COMMIT",
    "BEGIN",
    "ROLLBACK",
    "END",
    "ABORT",
    "START TRANSACTION",
    "COMMIT AND CHAIN",
    "SELECT ",
    "SELECT ",
    "'x'",
    "\"",
    "\"begin\"",
    "x",
    "1",
    "DO ",
    "BEGIN ATOMIC ",
    "CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS ",
    "U&'",
    "e'",
    "$1",
    "(",
    ")",
];

/// Shapes that parse more often than random pieces: a literal of random pieces around a
/// transaction keyword.
const TEMPLATES: &[&str] = &[
    "SELECT '{}'; {}; SELECT '{}'",
    "SELECT E'{}'; {}; SELECT '{}'",
    "SELECT $${}$$; {}; SELECT '{}'",
    "SELECT 1 /* {} */; {}; -- {}\nSELECT 2",
    "SELECT '{}' AS \"{}\"; {}",
    "DO $$ BEGIN PERFORM '{}'; END $$; {}; SELECT '{}'",
    // Read with backslashes as escapes the first literal swallows the second's opening
    // quote: what is inside a literal for one reading is outside for the other, and the
    // trailing comment's quote closes the last literal of the escaping reading.
    "SELECT '{}\\' , '; {}; SELECT ' --'\n",
    "SELECT '{}\\' AS a, ' {} ' AS \"{}\" --'\nSELECT 1",
];

const CONTROL: &[&str] = &[
    "COMMIT",
    "ROLLBACK",
    "BEGIN",
    "END",
    "ABORT",
    "COMMIT AND CHAIN",
];

/// What goes inside a template's literals: mostly readable, with the characters whose
/// meaning depends on the reading.
const INSIDE: &[&str] = &[
    "x", "x", " ", "\\", "\\'", "''", ";", " COMMIT ", "$$", "--", "/*", "*/", "\n",
];

/// xorshift64*: reproducible from its seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % below
    }

    fn pieces(&mut self, most: usize) -> String {
        (0..self.next(most) + 1)
            .map(|_| PIECES[self.next(PIECES.len())])
            .collect()
    }

    fn script(&mut self) -> String {
        if self.next(4) == 0 {
            return self.pieces(14);
        }
        let mut out = TEMPLATES[self.next(TEMPLATES.len())].to_owned();
        while let Some(at) = out.find("{}") {
            let fill = if self.next(3) == 0 {
                CONTROL[self.next(CONTROL.len())].to_owned()
            } else {
                (0..self.next(4))
                    .map(|_| INSIDE[self.next(INSIDE.len())])
                    .collect()
            };
            out.replace_range(at..at + 2, &fill);
        }
        out
    }
}

#[tokio::test]
async fn transaction_control_the_server_runs_was_always_refused_first() {
    let seed: u64 = std::env::var("WASMIG_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let cases: usize = std::env::var("WASMIG_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_000);
    let t = TestDb::new().await;
    let mut rng = Rng(seed);
    let (mut refused, mut syntax, mut ran, mut failed_on_server) = (0, 0, 0, 0);
    for case in 0..cases {
        let script = rng.script();
        let backslashes = rng.next(2) == 0;
        let mut s = t.session().await;
        if backslashes {
            // Past the parser (the setting's name is computed): the server now reads a
            // backslash in a literal as an escape.
            s.batch("SELECT set_config('standard_conforming' || '_strings', 'off', false)")
                .await
                .unwrap();
        }
        match s.batch(&script).await {
            Ok(()) => ran += 1,
            Err(e) if e.code == "WASMIG-STATE" => refused += 1,
            Err(e) if e.code == "42601" && e.message.contains("PostgreSQL's parser") => {
                syntax += 1;
            }
            Err(_) => failed_on_server += 1,
        }
        let intact = s.transaction_intact().await.unwrap();
        assert!(
            intact,
            "case {case} (WASMIG_FUZZ_SEED={seed}, standard_conforming_strings {}): the server \
             ran transaction control the check let through:\n{script}",
            if backslashes { "off" } else { "on" }
        );
        s.rollback().await.unwrap();
    }
    eprintln!(
        "measure: fuzz of the transaction-control check, seed {seed}: {cases} scripts; \
         {refused} refused by the check, {syntax} unreadable to the parser (refused as 42601), \
         {ran} ran on the server, {failed_on_server} failed on the server; 0 got past"
    );
    // The generator must reach the server, not only the parser.
    assert!(ran > cases / 10, "only {ran} of {cases} scripts ran");
    assert!(
        refused > cases / 20,
        "only {refused} of {cases} scripts were refused"
    );
}
