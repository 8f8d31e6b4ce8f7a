//! A trivial component revision for `bench/run`'s runner-overhead measurement: one
//! `SELECT 1` through the host. `bench/run` copies its built component as 200 `--kind wasm`
//! revisions.

use wasmig_guest::{Migration, Result, db};

struct Trivial;

impl Migration for Trivial {
    fn upgrade() -> Result<()> {
        db::execute("SELECT 1", &[])?;
        Ok(())
    }

    fn downgrade() -> Result<()> {
        db::execute("SELECT 1", &[])?;
        Ok(())
    }
}

wasmig_guest::migration!(Trivial);
