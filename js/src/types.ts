/**
 * The one typed contract between the kernel and the front end.
 *
 * Python owns the truth: `graph` is `Pipeline.to_json()`, `operators` comes from the
 * registry (with parameter controls chosen by `oremda_lab.widget.params`), and
 * `status`/`run`/`displays` mirror engine events. The front end only proposes edits
 * as `Command`s; the kernel validates them and answers with a `Reply`.
 */

export interface Endpoint {
  id: string;
  port: string;
}

export interface EdgeJSON {
  type?: string;
  from: Endpoint;
  to: Endpoint;
  [extra: string]: unknown;
}

export interface NodeJSON {
  id: string;
  type?: "operator" | "display" | string;
  image?: string;
  display?: "1D" | "2D" | string;
  params?: Record<string, unknown>;
  position?: { x: number; y: number };
  [extra: string]: unknown;
}

export interface PipelineJSON {
  version?: number;
  nodes: NodeJSON[];
  edges: EdgeJSON[];
  [extra: string]: unknown;
}

/** A bundled example pipeline offered in the toolbar's Examples menu (oremda_lab.examples). */
export interface Example {
  name: string;
  description?: string;
  graph: PipelineJSON;
}

export interface PortSpec {
  type: string;
  required?: boolean;
  dtype?: string;
  ndim?: number;
  description?: string;
}

/** How the parameter panel shows one parameter (chosen in Python, params.py). */
export interface Control {
  name: string;
  kind: "slider" | "dropdown" | "checkbox" | "number" | "text" | "json";
  integer?: boolean;
  min?: number;
  max?: number;
  step?: number;
  unit?: string;
  choices?: unknown[];
  default?: unknown;
  description?: string;
  per_axis?: boolean;
}

export interface OperatorInfo {
  name: string;
  image: string;
  description?: string;
  ports: { input: Record<string, PortSpec>; output: Record<string, PortSpec> };
  controls: Control[];
}

/** Node states, in the order of oremda_lab/engine/events.py NODE_STATES (a test compares them). */
export const NODE_STATES = ["queued", "preparing", "waiting", "running", "done", "cached", "error", "skipped"] as const;
export type NodeState = (typeof NODE_STATES)[number];

export interface NodeStatus {
  state: NodeState;
  duration_s?: number | null;
  cached?: boolean;
  // preparing: what (e.g. "creating environment for NAME (N packages) ..."); waiting: why;
  // running: what the progress counts (e.g. "12/64 partitions").
  message?: string | null;
  progress?: number | null; // running: fraction done in [0, 1], when the operator reports it
  error?: { message?: string; traceback?: string; log_tail?: string; exit_status?: number | null } | null;
}

export interface RunState {
  state: "idle" | "starting" | "running" | "done" | "error" | "invalid" | string;
  message?: string;
  problems?: string[];
  elapsed_s?: number | null;
  kernel_s?: number | null; // from the last command reaching the kernel to the results being sent
}

/** One display layer as the kernel encodes it for the canvas (see widget/_display.py). */
export interface Layer {
  kind: "picture" | "scatter" | "vector" | "png" | string;
  label?: string;
  color?: string;
  size?: number;
  width?: number;
  height?: number;
  pixels?: DataView; // picture: uint8, row-major, width*height
  points?: DataView; // scatter: float32 (y, x) pairs; vector: float32 (y, x, dy, dx)
  png?: DataView;
  shape?: number[]; // picture: the full image shape before binning
  scale?: number; // picture: block size of the binning (1 = full size)
}

export interface DisplayPayload {
  kind: string; // "1D" | "2D"
  layers: Layer[];
  revision: number;
  stale?: boolean; // the last good layers, kept while an upstream node fails
  partial?: string; // a preview while a node upstream still runs in partitions, e.g. "3/8 partitions"
  preview?: boolean; // pictures sent coarser while a parameter moves; the full-size ones follow when it stops
  encoded_at?: number; // the kernel's wall clock (ms since the epoch) when it encoded this payload: latency tracing
}

/** Edits the front end proposes; each maps to one Pipeline method in Python. */
export type Command =
  | { op: "add_node"; image?: string; display?: string; id?: string; params?: Record<string, unknown>; position?: { x: number; y: number } }
  | { op: "remove_node"; id: string }
  | { op: "connect"; from: Endpoint; to: Endpoint }
  | { op: "disconnect"; from: Endpoint; to: Endpoint }
  | { op: "set_param"; id: string; name: string; value: unknown }
  | { op: "set_position"; id: string; x: number; y: number }
  | { op: "layout"; positions: Record<string, { x: number; y: number }> }
  | { op: "replace"; graph: PipelineJSON }
  | { op: "batch"; commands: Command[] };

export interface Reply {
  type: "reply";
  id: number;
  ok: boolean;
  problems: string[];
  node?: string;
  /** Set by the front end when no reply came: `timeout` (none in time) or `unsent` (the comm is closed). */
  failure?: "timeout" | "unsent";
}
