/** Port tables and the connection rule, mirroring `Pipeline.connect` in Python. */
import type { NodeJSON, OperatorInfo, PipelineJSON, PortSpec } from "./types";

export const DISPLAY_PORT = "in";

export type Catalog = Map<string, OperatorInfo>;

/** `localhost/oremda/gaussian_blur:1` -> `gaussian_blur` (same rule as spec.pipeline.operator_name). */
export function operatorName(image: string): string {
  const last = image.split("/").pop() ?? image;
  return last.split("@")[0].split(":")[0];
}

export function makeCatalog(ops: OperatorInfo[]): Catalog {
  return new Map(ops.map((o) => [o.name, o]));
}

export function operatorOf(node: NodeJSON, catalog: Catalog): OperatorInfo | undefined {
  return node.image ? catalog.get(operatorName(node.image)) : undefined;
}

export interface Ports {
  input: Record<string, PortSpec>;
  output: Record<string, PortSpec>;
}

export function portsOf(node: NodeJSON, catalog: Catalog): Ports | undefined {
  if (node.type === "display") return { input: { [DISPLAY_PORT]: { type: "display" } }, output: {} };
  return operatorOf(node, catalog)?.ports;
}

/**
 * Why an edge from `src.srcPort` to `dst.dstPort` is refused, or null when it is allowed.
 * The kernel checks again (it is the judge); this gives instant feedback while dragging.
 */
export function connectionProblem(
  graph: PipelineJSON,
  catalog: Catalog,
  src: string,
  srcPort: string,
  dst: string,
  dstPort: string,
): string | null {
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  const a = byId.get(src);
  const b = byId.get(dst);
  if (!a) return `${src}: no such node`;
  if (!b) return `${dst}: no such node`;
  const out = portsOf(a, catalog)?.output[srcPort];
  const inp = portsOf(b, catalog)?.input[dstPort];
  if (!out) return `${src}.${srcPort}: no output port ${srcPort}`;
  if (!inp) return `${dst}.${dstPort}: no input port ${dstPort}`;
  if (out.type !== inp.type) return `${dst}.${dstPort}: ${out.type} output ${src}.${srcPort} cannot feed a ${inp.type} input`;
  if (b.type !== "display" && graph.edges.some((e) => e.to.id === dst && e.to.port === dstPort))
    return `${dst}.${dstPort}: input already connected`;
  if (src === dst || ancestors(graph, src).has(dst)) return `${dst}.${dstPort}: this edge would make a cycle`;
  return null;
}

export function ancestors(graph: PipelineJSON, id: string): Set<string> {
  const seen = new Set<string>();
  const stack = [id];
  while (stack.length) {
    const cur = stack.pop()!;
    for (const e of graph.edges) {
      if (e.to.id === cur && !seen.has(e.from.id)) {
        seen.add(e.from.id);
        stack.push(e.from.id);
      }
    }
  }
  return seen;
}

/** Colour per port type, shared by handles and edges. */
export const PORT_COLORS: Record<string, string> = {
  data: "#2563eb",
  binary: "#9333ea",
  display: "#16a34a",
};
