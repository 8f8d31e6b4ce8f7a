module wasmig

go 1.25
