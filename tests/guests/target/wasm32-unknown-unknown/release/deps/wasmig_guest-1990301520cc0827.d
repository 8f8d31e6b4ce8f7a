/work/main/tests/guests/target/wasm32-unknown-unknown/release/deps/wasmig_guest-1990301520cc0827.d: /work/main/guest-sdk/src/lib.rs /work/main/guest-sdk/src/batch.rs /work/main/guest-sdk/src/db.rs /work/main/guest-sdk/src/error.rs /work/main/guest-sdk/src/log.rs /work/main/guest-sdk/src/row.rs /work/main/guest-sdk/src/text_types.rs /work/main/guest-sdk/src/value.rs /work/main/guest-sdk/src/bindings.rs

/work/main/tests/guests/target/wasm32-unknown-unknown/release/deps/libwasmig_guest-1990301520cc0827.rlib: /work/main/guest-sdk/src/lib.rs /work/main/guest-sdk/src/batch.rs /work/main/guest-sdk/src/db.rs /work/main/guest-sdk/src/error.rs /work/main/guest-sdk/src/log.rs /work/main/guest-sdk/src/row.rs /work/main/guest-sdk/src/text_types.rs /work/main/guest-sdk/src/value.rs /work/main/guest-sdk/src/bindings.rs

/work/main/tests/guests/target/wasm32-unknown-unknown/release/deps/libwasmig_guest-1990301520cc0827.rmeta: /work/main/guest-sdk/src/lib.rs /work/main/guest-sdk/src/batch.rs /work/main/guest-sdk/src/db.rs /work/main/guest-sdk/src/error.rs /work/main/guest-sdk/src/log.rs /work/main/guest-sdk/src/row.rs /work/main/guest-sdk/src/text_types.rs /work/main/guest-sdk/src/value.rs /work/main/guest-sdk/src/bindings.rs

/work/main/guest-sdk/src/lib.rs:
/work/main/guest-sdk/src/batch.rs:
/work/main/guest-sdk/src/db.rs:
/work/main/guest-sdk/src/error.rs:
/work/main/guest-sdk/src/log.rs:
/work/main/guest-sdk/src/row.rs:
/work/main/guest-sdk/src/text_types.rs:
/work/main/guest-sdk/src/value.rs:
/work/main/guest-sdk/src/bindings.rs:
