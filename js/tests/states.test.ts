import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { statusLabel } from "../src/nodes.tsx";
import { NODE_STATES } from "../src/types.ts";

test("node states are the engine's (oremda_lab/engine/events.py)", () => {
  const source = readFileSync(new URL("../../oremda_lab/engine/events.py", import.meta.url), "utf8");
  const tuple = /^NODE_STATES = \(([^)]*)\)/m.exec(source);
  assert.ok(tuple, "NODE_STATES not found in events.py");
  const python = [...tuple[1].matchAll(/"([a-z]+)"/g)].map((m) => m[1]);
  assert.deepEqual([...NODE_STATES], python);
});

test("a preparing node says what it prepares; done shows its time", () => {
  const message = "creating environment for py4dstem_virtual (42 packages) ...";
  assert.equal(statusLabel({ state: "preparing", message }), `preparing: ${message}`);
  assert.equal(statusLabel({ state: "preparing" }), "preparing");
  assert.equal(statusLabel({ state: "done", duration_s: 0.25 }), "250 ms");
  assert.equal(statusLabel({ state: "done", duration_s: 0.25, cached: true }), "cached");
});
