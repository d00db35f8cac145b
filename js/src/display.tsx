/**
 * Display nodes drawn in the widget's output area.
 *
 * Pictures arrive as uint8 bytes (normalized in the kernel) and go straight to a canvas
 * through a 256-entry colour table: no PNG encode/decode on the slider path. Scatter and
 * vector layers are drawn on top in image coordinates; 1D plots arrive as PNG.
 */
import { memo, useEffect, useLayoutEffect, useRef } from "react";
import type { DisplayPayload, Layer } from "./types";
import { trace } from "./model";

const GREY = (() => {
  const lut = new Uint32Array(256);
  for (let i = 0; i < 256; i++) lut[i] = (255 << 24) | (i << 16) | (i << 8) | i; // little-endian ABGR
  return lut;
})();

/** Draw a picture layer's grey levels; `reuse` is the previous frame's ImageData (kept when the size matches). */
export function drawPicture(ctx: CanvasRenderingContext2D, layer: Layer, reuse?: ImageData): ImageData {
  const w = layer.width!;
  const h = layer.height!;
  const src = new Uint8Array(layer.pixels!.buffer, layer.pixels!.byteOffset, w * h);
  const img = reuse && reuse.width === w && reuse.height === h ? reuse : ctx.createImageData(w, h);
  const dst = new Uint32Array(img.data.buffer);
  for (let i = 0; i < src.length; i++) dst[i] = GREY[src[i]];
  ctx.putImageData(img, 0, 0);
  return img;
}

function floats(view?: DataView): Float32Array {
  if (!view) return new Float32Array(0);
  // Copy when unaligned (buffers from the comm are usually aligned, but not promised).
  if (view.byteOffset % 4) return new Float32Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
  return new Float32Array(view.buffer, view.byteOffset, view.byteLength / 4);
}

/** Draw a scatter/vector layer; `bin` is how much the picture under it was shrunk. */
function drawOverlay(ctx: CanvasRenderingContext2D, layer: Layer, scale: number, bin: number): void {
  const v = floats(layer.points).map((x) => x / bin);
  ctx.strokeStyle = ctx.fillStyle = layer.color || "#ff3b30";
  ctx.lineWidth = Math.max(1, scale);
  if (layer.kind === "scatter") {
    const r = (layer.size ?? 3) * scale;
    for (let i = 0; i + 1 < v.length; i += 2) {
      ctx.beginPath();
      ctx.arc(v[i + 1] + 0.5, v[i] + 0.5, r, 0, 2 * Math.PI);
      ctx.stroke();
    }
  } else if (layer.kind === "vector") {
    for (let i = 0; i + 3 < v.length; i += 4) {
      const [y, x, dy, dx] = [v[i], v[i + 1], v[i + 2], v[i + 3]];
      ctx.beginPath();
      ctx.moveTo(x, y);
      ctx.lineTo(x + dx, y + dy);
      ctx.stroke();
      const a = Math.atan2(dy, dx);
      const hl = 6 * scale;
      ctx.beginPath();
      ctx.moveTo(x + dx, y + dy);
      ctx.lineTo(x + dx - hl * Math.cos(a - 0.4), y + dy - hl * Math.sin(a - 0.4));
      ctx.lineTo(x + dx - hl * Math.cos(a + 0.4), y + dy - hl * Math.sin(a + 0.4));
      ctx.fill();
    }
  }
}

export const DisplayView = memo(function DisplayView({ id, payload }: { id: string; payload?: DisplayPayload }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const frame = useRef(0);
  const pixels = useRef<ImageData | undefined>(undefined);
  const layers = payload?.layers ?? [];
  const pictures = layers.filter((l) => l.kind === "picture");
  const overlays = layers.filter((l) => l.kind === "scatter" || l.kind === "vector");
  const pngs = layers.filter((l) => l.kind === "png");
  const draw = (c: HTMLCanvasElement, shown: DisplayPayload, base?: Layer) => {
    const w = base?.width ?? Math.max(1, ...overlays.map(() => 512));
    const h = base?.height ?? w;
    if (c.width !== w) c.width = w;
    if (c.height !== h) c.height = h;
    const ctx = c.getContext("2d")!;
    if (base) pixels.current = drawPicture(ctx, base, pixels.current);
    else ctx.clearRect(0, 0, w, h);
    const scale = Math.max(1, w / 512);
    for (const o of overlays) drawOverlay(ctx, o, scale, base?.scale ?? 1);
    frame.current += 1;
    trace("drawn");
    c.dataset.frame = String(frame.current);
    c.dataset.revision = String(shown.revision);
    c.dataset.preview = shown.preview ? "1" : "0";
    // Wall clocks (the kernel's and this page's, one machine in the benchmark): encoded -> drawn.
    if (shown.encoded_at) c.dataset.encodedAt = String(shown.encoded_at);
    c.dataset.drawnAt = String(Date.now());
  };
  // Drawn in the commit, before the browser paints: a passive effect may wait for the next frame.
  useLayoutEffect(() => {
    const c = canvas.current;
    if (c && payload) draw(c, payload, pictures[0]);
  }, [payload]);
  return (
    <div className={`oremda-display${payload?.stale ? " stale" : ""}`} data-display-id={id}>
      <div className="oremda-display-title">
        {id}
        {layers.length ? "" : " (no data yet)"}
        {payload?.stale ? <span className="oremda-stale"> (stale: an upstream node failed)</span> : null}
        {payload?.partial ? (
          <span className="oremda-partial" data-partial={payload.partial}>
            {" "}
            (partial: {payload.partial})
          </span>
        ) : null}
      </div>
      {pictures.length || overlays.length ? <canvas ref={canvas} className="oremda-canvas" data-display={id} /> : null}
      {pngs.map((l, i) => (
        <PngImage key={i} layer={l} revision={payload?.revision ?? 0} />
      ))}
    </div>
  );
});

/** The displays of the nodes `ids`, in that order. */
export function Displays({ ids, displays }: { ids: string[]; displays?: Record<string, DisplayPayload> }) {
  if (!ids.length) return null;
  return (
    <div className="oremda-displays">
      {ids.map((id) => (
        <DisplayView key={id} id={id} payload={displays?.[id]} />
      ))}
    </div>
  );
}

function PngImage({ layer, revision }: { layer: Layer; revision: number }) {
  const ref = useRef<HTMLImageElement>(null);
  useEffect(() => {
    if (!ref.current || !layer.png) return;
    const url = URL.createObjectURL(new Blob([layer.png as unknown as BlobPart], { type: "image/png" }));
    ref.current.src = url;
    ref.current.dataset.revision = String(revision);
    return () => URL.revokeObjectURL(url);
  }, [layer, revision]);
  return <img ref={ref} className="oremda-png" alt={layer.label ?? "plot"} />;
}
