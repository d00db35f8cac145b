/**
 * Edit commands, their inverses, and the undo/redo history.
 *
 * History lives in the front end as a stack of (command, inverse) pairs. An inverse is
 * computed from the graph *before* the command, so undo replays exactly what was there.
 * The kernel still validates every replayed command.
 */
import type { Command, EdgeJSON, NodeJSON, OperatorInfo, PipelineJSON } from "./types";
import { type Catalog, operatorOf } from "./ports";

export function inverse(graph: PipelineJSON, cmd: Command, catalog?: Catalog): Command | null {
  const node = (id: string) => graph.nodes.find((n) => n.id === id);
  switch (cmd.op) {
    case "add_node":
      // The kernel picks the id when none is given; callers pass an id so this works.
      return cmd.id ? { op: "remove_node", id: cmd.id } : null;
    case "remove_node": {
      const n = node(cmd.id);
      if (!n) return null;
      const touching = graph.edges.filter((e) => e.from.id === cmd.id || e.to.id === cmd.id);
      return { op: "batch", commands: [restoreNode(n), ...touching.map(connectOf)] };
    }
    case "connect":
      return { op: "disconnect", from: cmd.from, to: cmd.to };
    case "disconnect":
      return { op: "connect", from: cmd.from, to: cmd.to };
    case "set_param": {
      const n = node(cmd.id);
      if (!n) return null;
      let old = n.params?.[cmd.name];
      if (old === undefined && catalog) {
        old = defaultOf(operatorOf(n, catalog), cmd.name);
      }
      return old === undefined ? null : { op: "set_param", id: cmd.id, name: cmd.name, value: old };
    }
    case "set_position": {
      const p = node(cmd.id)?.position;
      return p ? { op: "set_position", id: cmd.id, x: p.x, y: p.y } : null;
    }
    case "layout": {
      const positions: Record<string, { x: number; y: number }> = {};
      for (const id of Object.keys(cmd.positions)) {
        const p = node(id)?.position;
        if (p) positions[id] = { ...p };
      }
      return { op: "layout", positions };
    }
    case "replace":
      return { op: "replace", graph: structuredClone(graph) };
    case "batch": {
      // Undo a batch back to front, each inverse taken against the graph it saw.
      const inverses: Command[] = [];
      let g = graph;
      for (const c of cmd.commands) {
        const inv = inverse(g, c, catalog);
        if (!inv) return null;
        inverses.unshift(inv);
        g = applyCommand(g, c);
      }
      return { op: "batch", commands: inverses };
    }
  }
}

function defaultOf(op: OperatorInfo | undefined, name: string): unknown {
  return op?.controls.find((c) => c.name === name)?.default;
}

function restoreNode(n: NodeJSON): Command {
  const cmd: Command = { op: "add_node", id: n.id, params: structuredClone(n.params ?? {}) };
  if (n.type === "display") cmd.display = n.display;
  else cmd.image = n.image;
  if (n.position) cmd.position = { ...n.position };
  return cmd;
}

function connectOf(e: EdgeJSON): Command {
  return { op: "connect", from: { ...e.from }, to: { ...e.to } };
}

/**
 * The graph a command would produce, without validation: used to compute the inverses
 * inside a batch and by tests. The kernel's answer (the `graph` trait) is what is shown.
 */
export function applyCommand(graph: PipelineJSON, cmd: Command): PipelineJSON {
  const g: PipelineJSON = structuredClone(graph);
  switch (cmd.op) {
    case "add_node": {
      const n: NodeJSON = { id: cmd.id ?? freshId(g, cmd), params: structuredClone(cmd.params ?? {}) };
      if (cmd.display) {
        n.type = "display";
        n.display = cmd.display;
      } else n.image = cmd.image;
      if (cmd.position) n.position = { ...cmd.position };
      g.nodes.push(n);
      return g;
    }
    case "remove_node":
      g.nodes = g.nodes.filter((n) => n.id !== cmd.id);
      g.edges = g.edges.filter((e) => e.from.id !== cmd.id && e.to.id !== cmd.id);
      return g;
    case "connect":
      g.edges.push({ type: "data", from: { ...cmd.from }, to: { ...cmd.to } });
      return g;
    case "disconnect":
      g.edges = g.edges.filter((e) => !sameEdge(e, cmd.from, cmd.to));
      return g;
    case "set_param": {
      const n = g.nodes.find((x) => x.id === cmd.id);
      if (n) n.params = { ...(n.params ?? {}), [cmd.name]: cmd.value };
      return g;
    }
    case "set_position": {
      const n = g.nodes.find((x) => x.id === cmd.id);
      if (n) n.position = { x: cmd.x, y: cmd.y };
      return g;
    }
    case "layout":
      for (const n of g.nodes) if (cmd.positions[n.id]) n.position = { ...cmd.positions[n.id] };
      return g;
    case "replace":
      return structuredClone(cmd.graph);
    case "batch":
      return cmd.commands.reduce(applyCommand, g);
  }
}

export function sameEdge(e: EdgeJSON, from: { id: string; port: string }, to: { id: string; port: string }): boolean {
  return e.from.id === from.id && e.from.port === from.port && e.to.id === to.id && e.to.port === to.port;
}

/** A fresh node id in the kernel's style: `gaussian_blur1`, `display2D1`. */
export function freshId(graph: PipelineJSON, cmd: { image?: string; display?: string }): string {
  const base = cmd.image ? (cmd.image.split("/").pop() ?? "node").split(":")[0] : `display${cmd.display}`;
  const taken = new Set(graph.nodes.map((n) => n.id));
  let i = 1;
  while (taken.has(`${base}${i}`)) i++;
  return `${base}${i}`;
}

export interface Entry {
  command: Command;
  inverse: Command;
  label: string;
}

/**
 * Undo/redo stacks of edits the kernel accepted. A new edit clears the redo stack. An
 * entry may be amended after it is pushed (a slider gesture, see params.ts).
 */
export class History {
  private done: Entry[] = [];
  private undone: Entry[] = [];
  constructor(private readonly limit = 200) {}

  push(entry: Entry): void {
    this.done.push(entry);
    if (this.done.length > this.limit) this.done.shift();
    this.undone = [];
  }
  canUndo(): boolean {
    return this.done.length > 0;
  }
  canRedo(): boolean {
    return this.undone.length > 0;
  }
  /** The command to send for undo; call `confirmUndo` once the kernel accepted it. */
  peekUndo(): Entry | undefined {
    return this.done[this.done.length - 1];
  }
  peekRedo(): Entry | undefined {
    return this.undone[this.undone.length - 1];
  }
  confirmUndo(): void {
    const e = this.done.pop();
    if (e) this.undone.push(e);
  }
  confirmRedo(): void {
    const e = this.undone.pop();
    if (e) this.done.push(e);
  }
  clear(): void {
    this.done = [];
    this.undone = [];
  }
  get size(): [number, number] {
    return [this.done.length, this.undone.length];
  }
}
