// The native Go peer of the Go guest (bench/run). lib/pq comes from Debian's
// golang-github-lib-pq-dev (no module proxy is reachable here): bench/run builds with
// GOPROXY=off and a replace onto /usr/share/gocode/src/github.com/lib/pq.
module wasmigbench/native

go 1.25

require github.com/lib/pq v1.10.7

replace github.com/lib/pq => /usr/share/gocode/src/github.com/lib/pq
