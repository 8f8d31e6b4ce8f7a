/work/main/tests/guests/target/wasm32-unknown-unknown/release/deps/scenario.d: scenario/src/lib.rs

/work/main/tests/guests/target/wasm32-unknown-unknown/release/deps/scenario.wasm: scenario/src/lib.rs

scenario/src/lib.rs:
