/** Canvas nodes: operators with one handle per named port, and display nodes. */
import { Handle, Position, type NodeProps } from "@xyflow/react";
import type { NodeJSON, NodeStatus, PortSpec } from "./types";
import { PORT_COLORS } from "./ports";
import { NODE_WIDTH } from "./layout";

export interface NodeData extends Record<string, unknown> {
  node: NodeJSON;
  title: string;
  inputs: Record<string, PortSpec>;
  outputs: Record<string, PortSpec>;
  status?: NodeStatus;
  unknown?: boolean;
}

export const STATE_COLORS: Record<string, string> = {
  queued: "#a3a3a3",
  preparing: "#8b5cf6",
  running: "#f59e0b",
  done: "#16a34a",
  cached: "#0891b2",
  error: "#dc2626",
  skipped: "#d4d4d4",
  waiting: "#64748b",
};

function PortRow({ name, spec, side, index }: { name: string; spec: PortSpec; side: "in" | "out"; index: number }) {
  const color = PORT_COLORS[spec.type] ?? "#555";
  const top = 44 + 20 * index + 10;
  return (
    <>
      <Handle
        type={side === "in" ? "target" : "source"}
        position={side === "in" ? Position.Left : Position.Right}
        id={name}
        className={`oremda-port oremda-port-${spec.type}`}
        data-port={name}
        data-port-type={spec.type}
        data-port-side={side}
        title={`${name} (${spec.type}${spec.required === false ? ", optional" : ""})${spec.description ? ": " + spec.description : ""}`}
        style={{ top, background: color, width: 11, height: 11, border: "2px solid white" }}
      />
      <div
        className={`oremda-port-label oremda-port-label-${side}`}
        style={{ top: top - 8, [side === "in" ? "left" : "right"]: 10, color }}
      >
        {name}
      </div>
    </>
  );
}

/** The node's status text: short, to fit the node; "done" shows its time, "preparing" what it does. */
export function statusLabel(status: NodeStatus): string {
  const d = status.duration_s;
  if (status.state === "cached" || status.cached) return "cached";
  if (status.state === "done" && d != null) return formatDuration(d);
  if (status.state === "preparing" && status.message) return `preparing: ${status.message}`;
  const p = progressOf(status);
  if (p) return `running ${Math.round(p.fraction * 100)}%`;
  return status.state;
}

/** A running node's progress (fraction clamped to [0, 1], and what it says), if it reported any. */
export function progressOf(status?: NodeStatus): { fraction: number; message: string } | null {
  if (status?.state !== "running" || typeof status.progress !== "number" || !Number.isFinite(status.progress)) return null;
  return { fraction: Math.min(1, Math.max(0, status.progress)), message: status.message ?? "" };
}

/** Why a node does not run (`waiting`: its inputs are not connected or cannot be computed yet). */
export function waitingText(status?: NodeStatus): string | null {
  if (status?.state !== "waiting") return null;
  // The engine says why ("waiting for input: in", "waiting for upstream: a, b").
  return status.message || "waiting for input";
}

/** Under the title: a progress bar with its message while running, or why the node waits. */
function NodeNote({ status }: { status?: NodeStatus }) {
  const p = progressOf(status);
  if (p) {
    return (
      <div className="oremda-node-progress" data-progress={p.fraction.toFixed(3)} title={p.message}>
        <div className="oremda-progress-bar">
          <div style={{ width: `${(p.fraction * 100).toFixed(1)}%` }} />
        </div>
        {p.message ? <div className="oremda-progress-msg">{p.message}</div> : null}
      </div>
    );
  }
  const waiting = waitingText(status);
  return waiting ? (
    <div className="oremda-node-waiting" data-waiting title={waiting}>
      {waiting}
    </div>
  ) : null;
}

function StatusLine({ status }: { status?: NodeStatus }) {
  if (!status) return null;
  const d = status.duration_s;
  const cached = status.state === "cached" || status.cached;
  const label = statusLabel(status);
  // The dot and border colour carry the state; the tooltip has the whole text.
  const tip =
    status.state === "preparing" ? label : `${cached ? "cached" : status.state}${d != null ? ` in ${formatDuration(d)}` : ""}`;
  return (
    <div className="oremda-node-status" data-state={status.state} title={tip}>
      <span className="oremda-dot" style={{ background: STATE_COLORS[status.state] ?? "#999" }} />
      {label}
    </div>
  );
}

export function formatDuration(s: number): string {
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`;
}

function ErrorBox({ status }: { status?: NodeStatus }) {
  const err = status?.state === "error" ? status.error : null;
  if (!err) return null;
  const log = [err.log_tail, err.traceback].filter(Boolean).join("\n");
  return (
    <div className="oremda-node-error nodrag nowheel">
      <div className="oremda-node-error-msg">{err.message ?? "error"}</div>
      {log ? (
        <details>
          <summary>log{err.exit_status != null ? ` (exit ${err.exit_status})` : ""}</summary>
          <pre>{log}</pre>
        </details>
      ) : null}
    </div>
  );
}

export function OperatorNode({ data, selected }: NodeProps & { data: NodeData }) {
  const ins = Object.entries(data.inputs);
  const outs = Object.entries(data.outputs);
  const state = data.status?.state;
  const h = 44 + 20 * Math.max(ins.length, outs.length, 1);
  return (
    <div
      className={`oremda-node${selected ? " selected" : ""}${data.unknown ? " unknown" : ""}`}
      data-node-id={data.node.id}
      data-state={state ?? "none"}
      style={{ width: NODE_WIDTH, minHeight: h, borderColor: state ? STATE_COLORS[state] : undefined }}
    >
      <div className="oremda-node-title">
        <b>{data.node.id}</b>
        <div className="oremda-node-sub">
          <span className="oremda-node-op">{data.title}</span>
          <StatusLine status={data.status} />
        </div>
      </div>
      {ins.map(([n, s], i) => (
        <PortRow key={`i-${n}`} name={n} spec={s} side="in" index={i} />
      ))}
      {outs.map(([n, s], i) => (
        <PortRow key={`o-${n}`} name={n} spec={s} side="out" index={i} />
      ))}
      <div style={{ height: h - 44 }} />
      <NodeNote status={data.status} />
      <ErrorBox status={data.status} />
    </div>
  );
}

export const nodeTypes = { operator: OperatorNode, display: OperatorNode };
