import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import { OperatorNode, progressOf, statusLabel, waitingText } from "../src/nodes.tsx";
import { NODE_STATES, type NodeStatus } from "../src/types.ts";

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

test("a waiting node says why; a running node shows its progress and message", () => {
  assert.equal(waitingText({ state: "waiting", message: "waiting for upstream: a, b" }), "waiting for upstream: a, b");
  assert.equal(waitingText({ state: "waiting" }), "waiting for input");
  assert.equal(waitingText({ state: "running", message: "x" }), null);
  assert.equal(statusLabel({ state: "waiting" }), "waiting");

  const status = { state: "running", progress: 0.4, message: "12/64 partitions" } as const;
  assert.deepEqual(progressOf(status), { fraction: 0.4, message: "12/64 partitions" });
  assert.equal(statusLabel(status), "running 40%");
  assert.equal(progressOf({ state: "running" }), null); // no progress reported: no bar
  assert.equal(statusLabel({ state: "running" }), "running");
  assert.equal(progressOf({ state: "done", progress: 1 }), null); // only while running
  assert.deepEqual(progressOf({ state: "running", progress: 1.7 }), { fraction: 1, message: "" }); // clamped
  assert.equal(progressOf({ state: "running", progress: Number.NaN }), null);
});

test("the node renders the waiting note and the progress bar", () => {
  const node = (status: NodeStatus) =>
    renderToStaticMarkup(
      createElement(OperatorNode, {
        id: "n",
        selected: false,
        data: { node: { id: "n", image: "oremda/x" }, title: "x", inputs: {}, outputs: {}, status },
      } as unknown as Parameters<typeof OperatorNode>[0]),
    );
  const waiting = node({ state: "waiting", message: "waiting for input: in" });
  assert.match(waiting, /data-state="waiting"/);
  assert.match(waiting, /class="oremda-node-waiting"[^>]*>waiting for input: in</);
  const running = node({ state: "running", progress: 0.25, message: "16/64 partitions" });
  assert.match(running, /data-progress="0.250"/);
  assert.match(running, /style="width:25.0%"/);
  assert.match(running, /16\/64 partitions/);
  assert.match(running, /running 25%/);
  assert.doesNotMatch(node({ state: "done", duration_s: 0.1 }), /oremda-node-progress|oremda-node-waiting/);
});
