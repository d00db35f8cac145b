import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connectionProblem, makeCatalog, operatorName, portsOf } from "../src/ports.ts";
import type { OperatorInfo, PipelineJSON } from "../src/types.ts";

const fixture = JSON.parse(readFileSync(new URL("../../tests/widget/connection_cases.json", import.meta.url), "utf8"));
const catalog = makeCatalog(
  fixture.operators.map((o: any): OperatorInfo => ({ name: o.name, image: `oremda/${o.name}`, ports: o.ports, controls: [] })),
);
const graph: PipelineJSON = fixture.graph;

test("operator names drop registry path, tag and digest", () => {
  assert.equal(operatorName("localhost/oremda/gaussian_blur:1"), "gaussian_blur");
  assert.equal(operatorName("oremda/picture@sha256:abc"), "picture");
  assert.equal(operatorName("crop2d"), "crop2d");
});

test("display nodes have one display input", () => {
  assert.deepEqual(portsOf({ id: "v", type: "display", display: "2D" }, catalog), { input: { in: { type: "display" } }, output: {} });
});

for (const c of fixture.cases) {
  test(`connect ${c.from.join(".")} -> ${c.to.join(".")} is ${c.ok ? "allowed" : "refused"} (shared with Python)`, () => {
    const problem = connectionProblem(graph, catalog, c.from[0], c.from[1], c.to[0], c.to[1]);
    if (c.ok) assert.equal(problem, null);
    else {
      assert.ok(problem, "expected a refusal");
      assert.match(problem!, new RegExp(c.says.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
    }
  });
}

test("a cycle is refused", () => {
  const g: PipelineJSON = structuredClone(graph);
  // b2 -> b1 would close b1 -> b2; b1.image is taken, so free it first.
  g.edges = g.edges.filter((e) => e.to.id !== "b1");
  assert.match(connectionProblem(g, catalog, "b2", "image", "b1", "image")!, /cycle/);
  assert.match(connectionProblem(g, catalog, "b1", "image", "b1", "image")!, /cycle/);
});

test("display inputs take many layers", () => {
  const g: PipelineJSON = structuredClone(graph);
  g.edges.push({ type: "display", from: { id: "p", port: "out" }, to: { id: "v", port: "in" } });
  assert.equal(connectionProblem(g, catalog, "p", "out", "v", "in"), null);
});
