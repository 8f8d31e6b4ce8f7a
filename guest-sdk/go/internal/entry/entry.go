// Package entry holds the migration's upgrade and downgrade functions between
// wasmig.Register, which sets them, and the exported functions of the component
// (package export_wit_world), which call them. It is a package of its own so that
// neither of the two imports the other.
package entry

import (
	"errors"
	"fmt"
	"strings"
)

// Upgrade and Downgrade are the functions given to wasmig.Register; nil until then.
var Upgrade, Downgrade func() error

// Run calls the registered function `name` ("upgrade" or "downgrade") and returns the
// message the migration fails with, or "" on success. A panic is not recovered: the
// component traps and wasmig rolls the step back (exit 7), as for any other guest bug.
// The message crosses to the host as UTF-8: bytes that are not are repaired to U+FFFD
// rather than trapping the component for how the message was made.
func Run(name string, f func() error) string {
	if f == nil {
		return fmt.Sprintf("the migration registers no %s function: call wasmig.Register(upgrade, downgrade) from an init function of migration.go", name)
	}
	err := f()
	if err == nil {
		return ""
	}
	if msg := err.Error(); msg != "" {
		return strings.ToValidUTF8(msg, "\uFFFD")
	}
	return errors.New("the migration failed with an empty error").Error()
}
