// The module jco builds: exports the `migration` world's `upgrade` and `downgrade` by calling
// those of the revision's `migration.js`. An exception becomes the world's error string, so
// wasmig reports it and rolls the step back; it never traps the component.
import * as migration from "./migration.js";
import { runExport } from "wasmig";

export function upgrade() {
  runExport("upgrade", migration.upgrade);
}

export function downgrade() {
  runExport("downgrade", migration.downgrade);
}
