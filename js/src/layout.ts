/** Auto layout: dagre, left to right, sized from the number of ports per node. */
import dagre from "@dagrejs/dagre";
import type { PipelineJSON } from "./types";
import { type Catalog, portsOf } from "./ports";

export const NODE_WIDTH = 160;

export function nodeHeight(inputs: number, outputs: number): number {
  return 44 + 20 * Math.max(inputs, outputs, 1);
}

export function autoLayout(graph: PipelineJSON, catalog: Catalog): Record<string, { x: number; y: number }> {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 24, ranksep: 45, marginx: 20, marginy: 20 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of graph.nodes) {
    const p = portsOf(n, catalog);
    const h = nodeHeight(Object.keys(p?.input ?? {}).length, Object.keys(p?.output ?? {}).length);
    g.setNode(n.id, { width: NODE_WIDTH, height: h });
  }
  for (const e of graph.edges) if (g.hasNode(e.from.id) && g.hasNode(e.to.id)) g.setEdge(e.from.id, e.to.id);
  dagre.layout(g);
  const out: Record<string, { x: number; y: number }> = {};
  for (const id of g.nodes()) {
    const n = g.node(id);
    // dagre gives centres; React Flow wants top-left corners. Round so JSON stays tidy.
    out[id] = { x: Math.round(n.x - n.width / 2), y: Math.round(n.y - n.height / 2) };
  }
  return out;
}

/** True when some node has no stored position (the editor then lays the graph out once). */
export function needsLayout(graph: PipelineJSON): boolean {
  return graph.nodes.some((n) => !n.position);
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * Where a node of `size` placed near `pos` covers no other node: moved down, below each
 * node it would overlap, until it is clear (a node added by keyboard or double-click).
 */
export function freeSpot(pos: { x: number; y: number }, boxes: Box[], size: { width: number; height: number }, gap = 16): { x: number; y: number } {
  const at = { ...pos };
  for (let i = 0; i <= boxes.length; i++) {
    const hit = boxes.find(
      (b) => at.x < b.x + b.width + gap && b.x < at.x + size.width + gap && at.y < b.y + b.height + gap && b.y < at.y + size.height + gap,
    );
    if (!hit) break;
    at.y = hit.y + hit.height + gap;
  }
  return at;
}
