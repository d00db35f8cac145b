import { test } from "node:test";
import assert from "node:assert/strict";
import { drawPicture } from "../src/display.tsx";
import type { Layer } from "../src/types.ts";

/** The part of a 2D context drawPicture uses; records what was put on the canvas. */
function fakeContext() {
  const puts: ImageData[] = [];
  const ctx = {
    createImageData: (w: number, h: number) => ({ width: w, height: h, data: new Uint8ClampedArray(4 * w * h) }) as ImageData,
    putImageData: (img: ImageData) => puts.push(img),
  };
  return { ctx: ctx as unknown as CanvasRenderingContext2D, puts };
}

test("a picture's grey levels (a binary buffer at an offset) become opaque grey pixels", () => {
  // The comm hands the bytes over as a DataView into a larger buffer: the offset must count.
  const levels = [0, 17, 128, 255, 3, 200];
  const buffer = new Uint8Array([9, 9, ...levels]).buffer;
  const layer: Layer = { kind: "picture", width: 3, height: 2, pixels: new DataView(buffer, 2, 6) };
  const { ctx, puts } = fakeContext();
  const img = drawPicture(ctx, layer);
  assert.equal(puts.length, 1);
  assert.deepEqual([...img.data], levels.flatMap((v) => [v, v, v, 255]));
});

test("the next frame of the same size reuses the ImageData; a new size gets a new one", () => {
  const { ctx } = fakeContext();
  const pic = (w: number, h: number, v: number): Layer => ({
    kind: "picture", width: w, height: h, pixels: new DataView(new Uint8Array(w * h).fill(v).buffer),
  });
  const first = drawPicture(ctx, pic(4, 4, 10));
  const second = drawPicture(ctx, pic(4, 4, 20), first);
  assert.equal(second, first);
  assert.equal(second.data[0], 20);
  const third = drawPicture(ctx, pic(2, 8, 30), second);
  assert.notEqual(third, second);
  assert.deepEqual([third.width, third.height, third.data[4]], [2, 8, 30]);
});
