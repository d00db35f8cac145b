import { test } from "node:test";
import assert from "node:assert/strict";
import { autoLayout, freeSpot, needsLayout } from "../src/layout.ts";
import { makeCatalog } from "../src/ports.ts";
import { Coalescer } from "../src/model.ts";
import { SLIDER_HOLD_MS, adoptAfter, filterItems, paletteItems, parseValue } from "../src/panels.tsx";
import type { OperatorInfo, PipelineJSON } from "../src/types.ts";

const ops: OperatorInfo[] = [
  { name: "gaussian_blur", image: "oremda/gaussian_blur", description: "Gaussian low-pass filter", ports: { input: { image: { type: "data" } }, output: { image: { type: "data" } } }, controls: [] },
  { name: "fft2d", image: "oremda/fft2d", description: "2D Fourier transform", ports: { input: { in: { type: "data" } }, output: { real: { type: "data" }, imag: { type: "data" } } }, controls: [] },
];

test("auto layout puts each node right of its inputs", () => {
  const g: PipelineJSON = {
    nodes: [{ id: "c", image: "oremda/gaussian_blur" }, { id: "a", image: "oremda/fft2d" }, { id: "b", image: "oremda/gaussian_blur" }],
    edges: [
      { from: { id: "a", port: "real" }, to: { id: "b", port: "image" } },
      { from: { id: "b", port: "image" }, to: { id: "c", port: "image" } },
    ],
  };
  assert.ok(needsLayout(g));
  const pos = autoLayout(g, makeCatalog(ops));
  assert.ok(pos.a.x < pos.b.x && pos.b.x < pos.c.x, JSON.stringify(pos));
  for (const p of Object.values(pos)) assert.ok(Number.isInteger(p.x) && Number.isInteger(p.y));
});

test("palette search matches names and descriptions, and offers display nodes", () => {
  const items = paletteItems(ops);
  assert.deepEqual(items.map((i) => i.key), ["gaussian_blur", "fft2d", "display2D", "display1D"]);
  assert.deepEqual(filterItems(items, "fourier").map((i) => i.key), ["fft2d"]);
  assert.deepEqual(filterItems(items, "BLUR").map((i) => i.key), ["gaussian_blur"]);
  assert.equal(filterItems(items, "  ").length, 4);
});

test("text boxes send numbers, per-axis lists and JSON; the kernel judges the rest", () => {
  assert.equal(parseValue({ name: "n", kind: "number" }, "2.5"), 2.5);
  assert.equal(parseValue({ name: "n", kind: "number" }, "abc"), "abc");
  assert.deepEqual(parseValue({ name: "s", kind: "number", per_axis: true }, "[1, 2]"), [1, 2]);
  assert.deepEqual(parseValue({ name: "b", kind: "json" }, "[0, 10, 0, 5]"), [0, 10, 0, 5]);
  assert.equal(parseValue({ name: "f", kind: "text" }, " a.tif"), " a.tif");
});

test("a stream of slider values keeps one message in flight and sends the newest", async () => {
  const sent: number[] = [];
  const waiters: (() => void)[] = [];
  const c = new Coalescer<number>((v) => {
    sent.push(v);
    return new Promise<void>((r) => waiters.push(r));
  });
  for (let v = 1; v <= 10; v++) c.push(v);
  assert.deepEqual(sent, [1]);
  waiters.shift()!();
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(sent, [1, 10]);
  waiters.shift()!();
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(sent, [1, 10]);
});

test("a node added without a position goes where it covers no other node", () => {
  const size = { width: 160, height: 80 };
  assert.deepEqual(freeSpot({ x: 0, y: 0 }, [], size), { x: 0, y: 0 });
  const boxes = [
    { x: 10, y: 10, width: 160, height: 64 },
    { x: 40, y: 90, width: 160, height: 84 }, // right below the first: skipped as well
    { x: 400, y: 0, width: 160, height: 64 }, // beside: not in the way
  ];
  const at = freeSpot({ x: 0, y: 0 }, boxes, size);
  assert.deepEqual(at, { x: 0, y: 90 + 84 + 16 });
  for (const b of boxes) assert.ok(at.y >= b.y + b.height || at.x + size.width <= b.x, JSON.stringify(b));
});

test("a slider takes the kernel's value only after a pause and never while its own value is on its way", () => {
  assert.equal(adoptAfter(1000, 900, false), SLIDER_HOLD_MS - 100); // moved 100 ms ago: wait
  assert.equal(adoptAfter(5000, 900, false), 0); // paused: take it now
  assert.equal(adoptAfter(5000, 900, true), null); // a slow reply: keep counting from our own value
  assert.equal(adoptAfter(5000, 0, false), 0); // after a refusal or a lost reply (lastMove reset)
});
