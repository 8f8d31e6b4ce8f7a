// Package export_wit_world implements the world's exports, which the generated
// package wit_exports calls: each runs the function registered with wasmig.Register.
package export_wit_world

import (
	"wasmig/internal/entry"
	witTypes "wasmig/internal/wit/types"
)

// Upgrade runs the migration's upgrade function.
func Upgrade() witTypes.Result[witTypes.Unit, string] {
	return result(entry.Run("upgrade", entry.Upgrade))
}

// Downgrade runs the migration's downgrade function.
func Downgrade() witTypes.Result[witTypes.Unit, string] {
	return result(entry.Run("downgrade", entry.Downgrade))
}

func result(message string) witTypes.Result[witTypes.Unit, string] {
	if message == "" {
		return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
	}
	return witTypes.Err[witTypes.Unit, string](message)
}
