//! The operator's ceilings: limits that no project file can raise.
//!
//! A project's `wasmig.toml` and each revision's `migration.toml` choose a migration's
//! limits (memory, deadline, batches, statement timeouts), and in shared CI those files are
//! the pull request's. So the operator sets ceilings outside the checkout, in the CI job's
//! environment (`WASMIG_MAX_MEMORY_MIB` and friends; the project's `.env` is never read for
//! them), and every limit a project file asks for is lowered to its ceiling, with a
//! warning. In untrusted mode a ceiling the operator did not set is the default limit, so
//! an untrusted change can only lower limits. The same goes for what a revision's SQL may
//! do (`WASMIG_ALLOWED_CAPABILITIES`): no manifest can declare more.
//!
//! Not here: the limits' defaults and ranges (`config`), their enforcement (`sandbox`,
//! `runner`).

use wasmig_plan::Capabilities;

use crate::config::{SandboxSettings, StatementTimeouts};
use crate::error::ConfigError;

/// One ceiling per limit a project file sets (`None`: no ceiling).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ceilings {
    /// `WASMIG_MAX_MEMORY_MIB`: `memory_limit_mib`.
    pub memory_limit_mib: Option<u64>,
    /// `WASMIG_MAX_TIMEOUT_SECS`: `timeout_secs`.
    pub timeout_secs: Option<f64>,
    /// `WASMIG_MAX_COMPILE_TIMEOUT_SECS`: `compile_timeout_secs`.
    pub compile_timeout_secs: Option<f64>,
    /// `WASMIG_MAX_COMPONENT_MIB`: `max_component_mib`.
    pub max_component_mib: Option<u64>,
    /// `WASMIG_MAX_BATCHES`: `max_batches`.
    pub max_batches: Option<u64>,
    /// `WASMIG_MAX_BATCHED_TIMEOUT_SECS`: `batched_timeout_secs`.
    pub batched_timeout_secs: Option<f64>,
    /// `WASMIG_MAX_STATEMENT_TIMEOUT_SECS`: `statement_timeout_secs` (also the timeout of a
    /// revision that sets none).
    pub statement_timeout_secs: Option<f64>,
    /// `WASMIG_MAX_LOCK_TIMEOUT_SECS`: `lock_timeout_secs` (also the timeout of a revision
    /// that sets none).
    pub lock_timeout_secs: Option<f64>,
    /// `WASMIG_ALLOWED_CAPABILITIES` (`read,write`, or `none`): what any revision's SQL may
    /// do. A revision declaring a capability outside it is refused before the run; one
    /// declaring nothing is held to it statement by statement.
    pub allowed_capabilities: Option<Capabilities>,
}

/// The variable of [`Ceilings::allowed_capabilities`].
pub const ALLOWED_CAPABILITIES: &str = "WASMIG_ALLOWED_CAPABILITIES";

/// The variables, in the order of the fields.
pub const VARIABLES: [&str; 8] = [
    "WASMIG_MAX_MEMORY_MIB",
    "WASMIG_MAX_TIMEOUT_SECS",
    "WASMIG_MAX_COMPILE_TIMEOUT_SECS",
    "WASMIG_MAX_COMPONENT_MIB",
    "WASMIG_MAX_BATCHES",
    "WASMIG_MAX_BATCHED_TIMEOUT_SECS",
    "WASMIG_MAX_STATEMENT_TIMEOUT_SECS",
    "WASMIG_MAX_LOCK_TIMEOUT_SECS",
];

impl Ceilings {
    /// The ceilings set in the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming a variable that is not a positive number.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] with the variables looked up by `get`.
    ///
    /// # Errors
    /// As [`Self::from_env`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let float = |name: &str| -> Result<Option<f64>, ConfigError> {
            match get(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(text) => match text.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
                    _ => Err(ConfigError::new(format!(
                        "{name}={text} is not a number of seconds above 0"
                    ))),
                },
            }
        };
        let int = |name: &str| -> Result<Option<u64>, ConfigError> {
            match get(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(text) => match text.trim().parse::<u64>() {
                    Ok(v) if v > 0 => Ok(Some(v)),
                    _ => Err(ConfigError::new(format!(
                        "{name}={text} is not a whole number above 0"
                    ))),
                },
            }
        };
        Ok(Ceilings {
            memory_limit_mib: int(VARIABLES[0])?,
            timeout_secs: float(VARIABLES[1])?,
            compile_timeout_secs: float(VARIABLES[2])?,
            max_component_mib: int(VARIABLES[3])?,
            max_batches: int(VARIABLES[4])?,
            batched_timeout_secs: float(VARIABLES[5])?,
            statement_timeout_secs: float(VARIABLES[6])?,
            lock_timeout_secs: float(VARIABLES[7])?,
            allowed_capabilities: match get(ALLOWED_CAPABILITIES).filter(|v| !v.trim().is_empty()) {
                None => None,
                Some(text) if text.trim().eq_ignore_ascii_case("none") => Some(Capabilities::NONE),
                Some(text) => Some(Capabilities::parse_list(&text).map_err(|e| {
                    ConfigError::new(format!(
                        "{ALLOWED_CAPABILITIES}={text}: {e} (or `none`), separated by commas"
                    ))
                })?),
            },
        })
    }

    /// These ceilings, with the default limits where none is set (untrusted mode).
    #[must_use]
    pub fn or_defaults(self) -> Self {
        let defaults = SandboxSettings::default();
        Ceilings {
            memory_limit_mib: self.memory_limit_mib.or(Some(defaults.memory_limit_mib)),
            timeout_secs: self.timeout_secs.or(Some(defaults.timeout_secs)),
            compile_timeout_secs: self
                .compile_timeout_secs
                .or(Some(defaults.compile_timeout_secs)),
            max_component_mib: self.max_component_mib.or(Some(defaults.max_component_mib)),
            max_batches: self.max_batches.or(Some(defaults.max_batches)),
            batched_timeout_secs: self
                .batched_timeout_secs
                .or(Some(defaults.batched_timeout_secs)),
            ..self
        }
    }

    /// `settings` (of `origin`, a file) with every limit lowered to its ceiling, warning
    /// once per file and limit lowered (`origin` `None`: silently).
    pub fn clamp(&self, settings: SandboxSettings, origin: Option<&str>) -> SandboxSettings {
        SandboxSettings {
            memory_limit_mib: lower(
                settings.memory_limit_mib,
                self.memory_limit_mib,
                "memory_limit_mib",
                VARIABLES[0],
                origin,
            ),
            timeout_secs: lower(
                settings.timeout_secs,
                self.timeout_secs,
                "timeout_secs",
                VARIABLES[1],
                origin,
            ),
            compile_timeout_secs: lower(
                settings.compile_timeout_secs,
                self.compile_timeout_secs,
                "compile_timeout_secs",
                VARIABLES[2],
                origin,
            ),
            max_component_mib: lower(
                settings.max_component_mib,
                self.max_component_mib,
                "max_component_mib",
                VARIABLES[3],
                origin,
            ),
            max_batches: lower(
                settings.max_batches,
                self.max_batches,
                "max_batches",
                VARIABLES[4],
                origin,
            ),
            batched_timeout_secs: lower(
                settings.batched_timeout_secs,
                self.batched_timeout_secs,
                "batched_timeout_secs",
                VARIABLES[5],
                origin,
            ),
            // Not a limit: both compilers are wasmtime's supported ones.
            compiler: settings.compiler,
        }
    }

    /// `timeouts` (of `origin`) lowered to their ceilings; one not set gets its ceiling.
    pub fn clamp_timeouts(
        &self,
        timeouts: StatementTimeouts,
        origin: Option<&str>,
    ) -> StatementTimeouts {
        let one = |value: Option<f64>, ceiling: Option<f64>, name: &str, variable: &str| match (
            value, ceiling,
        ) {
            (Some(v), Some(c)) => Some(lower(v, Some(c), name, variable, origin)),
            (None, c) => c,
            (v, None) => v,
        };
        StatementTimeouts {
            statement_timeout_secs: one(
                timeouts.statement_timeout_secs,
                self.statement_timeout_secs,
                "statement_timeout_secs",
                VARIABLES[6],
            ),
            lock_timeout_secs: one(
                timeouts.lock_timeout_secs,
                self.lock_timeout_secs,
                "lock_timeout_secs",
                VARIABLES[7],
            ),
            lock_timeout_retries: timeouts.lock_timeout_retries,
        }
    }
}

/// `value`, or `ceiling` when it is lower (warning so, once per origin and limit).
fn lower<T: PartialOrd + Copy + std::fmt::Display>(
    value: T,
    ceiling: Option<T>,
    name: &str,
    variable: &str,
    origin: Option<&str>,
) -> T {
    static WARNED: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    match ceiling {
        Some(c) if value > c => {
            if let Some(origin) = origin {
                let key = (origin.to_owned(), name.to_owned());
                let mut warned = WARNED
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !warned.contains(&key) {
                    warned.push(key);
                    tracing::warn!(
                        "{origin} asks for {name} = {value}, above its ceiling of {c}: using {c} (the ceiling is {variable}, or in untrusted mode the default limit when that is not set)"
                    );
                }
            }
            c
        }
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_above_a_ceiling_are_lowered_and_others_kept() {
        let ceilings = Ceilings::from_lookup(|name| match name {
            "WASMIG_MAX_MEMORY_MIB" => Some("64".into()),
            "WASMIG_MAX_STATEMENT_TIMEOUT_SECS" => Some("5".into()),
            _ => None,
        })
        .unwrap();
        let asked = SandboxSettings {
            memory_limit_mib: 65_536,
            timeout_secs: 604_800.0,
            ..SandboxSettings::default()
        };
        let held = ceilings.clamp(asked, Some("versions/r1/migration.toml"));
        assert_eq!(held.memory_limit_mib, 64);
        assert_eq!(held.timeout_secs, 604_800.0, "no ceiling: kept");
        let held = ceilings.or_defaults().clamp(asked, None);
        assert_eq!(held.timeout_secs, SandboxSettings::default().timeout_secs);
        let lower = SandboxSettings {
            memory_limit_mib: 16,
            ..SandboxSettings::default()
        };
        assert_eq!(ceilings.clamp(lower, None).memory_limit_mib, 16);
        let timeouts = ceilings.clamp_timeouts(StatementTimeouts::default(), None);
        assert_eq!(timeouts.statement_timeout_secs, Some(5.0));
        assert_eq!(timeouts.lock_timeout_secs, None);
    }

    #[test]
    fn allowed_capabilities_are_read_from_the_environment_only_by_name() {
        let read = |value: &str| {
            let value = value.to_owned();
            Ceilings::from_lookup(move |name| (name == ALLOWED_CAPABILITIES).then(|| value.clone()))
        };
        assert_eq!(
            read("read, write").unwrap().allowed_capabilities,
            Some(Capabilities::parse_list("read,write").unwrap())
        );
        assert_eq!(
            read("none").unwrap().allowed_capabilities,
            Some(Capabilities::NONE)
        );
        assert_eq!(read(" ").unwrap().allowed_capabilities, None);
        let e = read("read,everything").unwrap_err().message;
        assert!(
            e.contains("WASMIG_ALLOWED_CAPABILITIES=read,everything"),
            "{e}"
        );
    }

    #[test]
    fn a_ceiling_that_is_not_a_number_is_refused() {
        let bad = Ceilings::from_lookup(|name| {
            (name == "WASMIG_MAX_TIMEOUT_SECS").then(|| "a week".to_owned())
        });
        assert!(
            bad.unwrap_err()
                .message
                .contains("WASMIG_MAX_TIMEOUT_SECS=a week")
        );
    }
}
