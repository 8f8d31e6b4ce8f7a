/work/main/tests/guests/target/wasm32-unknown-unknown/release/deps/wit_bindgen-76ea42ff77c27ec0.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/rt/mod.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/rt/wit_bindgen_cabi_realloc.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/resource.rs

/work/main/tests/guests/target/wasm32-unknown-unknown/release/deps/libwit_bindgen-76ea42ff77c27ec0.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/rt/mod.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/rt/wit_bindgen_cabi_realloc.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/resource.rs

/work/main/tests/guests/target/wasm32-unknown-unknown/release/deps/libwit_bindgen-76ea42ff77c27ec0.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/rt/mod.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/rt/wit_bindgen_cabi_realloc.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/resource.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/rt/mod.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/rt/wit_bindgen_cabi_realloc.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wit-bindgen-0.63.0/src/resource.rs:
