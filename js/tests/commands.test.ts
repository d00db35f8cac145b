import { test } from "node:test";
import assert from "node:assert/strict";
import { History, applyCommand, freshId, inverse } from "../src/commands.ts";
import type { Command, OperatorInfo, PipelineJSON } from "../src/types.ts";
import { makeCatalog } from "../src/ports.ts";

const blur: OperatorInfo = {
  name: "gaussian_blur",
  image: "oremda/gaussian_blur",
  ports: { input: { image: { type: "data" } }, output: { image: { type: "data" } } },
  controls: [{ name: "sigma", kind: "slider", min: 0, max: 50, default: 2 }],
};
const catalog = makeCatalog([blur]);

function base(): PipelineJSON {
  return {
    version: 1,
    nodes: [
      { id: "src", image: "oremda/tiff_reader", params: { filename: "a.tif" }, position: { x: 0, y: 0 } },
      { id: "blur", image: "oremda/gaussian_blur", params: { sigma: 3 }, position: { x: 200, y: 0 } },
      { id: "view", type: "display", display: "2D", params: {}, position: { x: 400, y: 0 } },
    ],
    edges: [{ type: "data", from: { id: "src", port: "out" }, to: { id: "blur", port: "image" } }],
  };
}

/** Apply a command then its inverse: the graph must come back (up to node/edge order). */
function roundTrip(cmd: Command, g = base()) {
  const inv = inverse(g, cmd, catalog);
  assert.ok(inv, `no inverse for ${cmd.op}`);
  const after = applyCommand(g, cmd);
  assert.notDeepEqual(after, g, "the command changed nothing");
  const back = applyCommand(after, inv!);
  const norm = (x: PipelineJSON) => ({
    ...x,
    nodes: [...x.nodes].sort((a, b) => a.id.localeCompare(b.id)),
    edges: [...x.edges].map((e) => JSON.stringify([e.from, e.to])).sort(),
  });
  assert.deepEqual(norm(back), norm(g));
}

test("every edit has an inverse that restores the graph", () => {
  roundTrip({ op: "add_node", id: "blur2", image: "oremda/gaussian_blur", params: {}, position: { x: 1, y: 2 } });
  roundTrip({ op: "remove_node", id: "blur" });
  roundTrip({ op: "connect", from: { id: "blur", port: "image" }, to: { id: "view", port: "in" } });
  roundTrip({ op: "disconnect", from: { id: "src", port: "out" }, to: { id: "blur", port: "image" } });
  roundTrip({ op: "set_param", id: "blur", name: "sigma", value: 7 });
  roundTrip({ op: "set_position", id: "src", x: 50, y: 60 });
  roundTrip({ op: "layout", positions: { src: { x: 9, y: 9 }, view: { x: 1, y: 1 } } });
  roundTrip({
    op: "batch",
    commands: [
      { op: "disconnect", from: { id: "src", port: "out" }, to: { id: "blur", port: "image" } },
      { op: "remove_node", id: "src" },
    ],
  });
});

test("removing a node is undone with its edges", () => {
  const inv = inverse(base(), { op: "remove_node", id: "blur" }, catalog)!;
  assert.equal(inv.op, "batch");
  const cmds = (inv as { commands: Command[] }).commands;
  assert.deepEqual(cmds[0], { op: "add_node", id: "blur", image: "oremda/gaussian_blur", params: { sigma: 3 }, position: { x: 200, y: 0 } });
  assert.deepEqual(cmds[1], { op: "connect", from: { id: "src", port: "out" }, to: { id: "blur", port: "image" } });
});

test("undoing a first-time parameter restores the schema default", () => {
  const g = base();
  g.nodes[1].params = {};
  assert.deepEqual(inverse(g, { op: "set_param", id: "blur", name: "sigma", value: 9 }, catalog), {
    op: "set_param",
    id: "blur",
    name: "sigma",
    value: 2,
  });
});

test("fresh ids follow the kernel's pattern", () => {
  assert.equal(freshId(base(), { image: "oremda/gaussian_blur:2" }), "gaussian_blur1");
  const g = base();
  g.nodes.push({ id: "display2D1", type: "display", display: "2D" });
  assert.equal(freshId(g, { display: "2D" }), "display2D2");
});

test("history: undo, redo, and a new edit clears redo", () => {
  const h = new History();
  const e = (n: number) => ({
    command: { op: "set_param", id: "b", name: "s", value: n } as Command,
    inverse: { op: "set_param", id: "b", name: "s", value: n - 1 } as Command,
    label: `e${n}`,
  });
  assert.equal(h.canUndo(), false);
  h.push(e(1));
  h.push(e(2));
  assert.equal(h.peekUndo()!.label, "e2");
  h.confirmUndo();
  assert.equal(h.canRedo(), true);
  assert.equal(h.peekRedo()!.label, "e2");
  h.confirmRedo();
  assert.deepEqual(h.size, [2, 0]);
  h.confirmUndo();
  h.push(e(3));
  assert.equal(h.canRedo(), false);
  assert.deepEqual(h.size, [2, 0]);
});

test("history is bounded", () => {
  const h = new History(3);
  for (let i = 0; i < 5; i++) h.push({ command: { op: "remove_node", id: `${i}` }, inverse: { op: "remove_node", id: `${i}` }, label: `${i}` });
  assert.deepEqual(h.size, [3, 0]);
});
