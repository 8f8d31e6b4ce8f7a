//! The adversarial suite: a hostile migration (SQL or guest) or a hostile project file
//! trying to make wasmig lie about what happened, corrupt its state, or reach outside the
//! project. One module per class; each test asserts the exit code, the message, wasmig's
//! tables and the database's contents afterwards.

mod capabilities;
mod deadlines;
mod frozen;
mod limits;
mod links;
mod lock;
mod memory;
mod paths;
mod policy;
mod proxy;
mod role;
mod rows;
mod schema;
mod session;
mod smuggle;
mod spoof;
mod tables;
mod text;
