/** The pipeline editor: canvas, palette, parameter panel, toolbar and displays. */
import { memo, useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import {
  Background,
  Controls,
  ReactFlow,
  ReactFlowProvider,
  applyNodeChanges,
  useReactFlow,
  type Connection,
  type Edge,
  type Node,
  type NodeChange,
} from "@xyflow/react";
import type { Command, DisplayPayload, Example, NodeStatus, OperatorInfo, PipelineJSON, Reply, RunState } from "./types";
import { type Catalog, PORT_COLORS, connectionProblem, makeCatalog, operatorOf, portsOf } from "./ports";
import { History, freshId, inverse } from "./commands";
import { NODE_WIDTH, autoLayout, freeSpot, needsLayout } from "./layout";
import { Channel, type Model, REQUEST_TIMEOUT_MS, trace } from "./model";
import { DirectTransport } from "./direct";
import { ParamStream } from "./params";
import { type NodeData, formatDuration, nodeTypes } from "./nodes";
import { type ControlState, DRAG_MIME, Palette, ParamPanel, type PaletteItem } from "./panels";
import { Displays } from "./display";
import { Store, useStore } from "./store";

/** Runs `cb` once the next frame has been drawn; returns a cancel function. */
function afterNextFrame(cb: () => void): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const frame = requestAnimationFrame(() => (timer = setTimeout(cb, 0)));
  return () => {
    cancelAnimationFrame(frame);
    clearTimeout(timer);
  };
}

/**
 * A trait as React state. `later`: its changes render after the next frame, so what can
 * wait (node status, the run bar) stays out of the frame that shows a new picture, which
 * then has only the canvas to paint.
 */
function useTrait<T>(model: Model, name: string, later = false): T {
  const subscribe = useCallback(
    (cb: () => void) => {
      let pending: (() => void) | undefined;
      const changed = () => {
        trace(`change:${name}`);
        if (!later) cb();
        else
          pending ??= afterNextFrame(() => {
            pending = undefined;
            cb();
          });
      };
      model.on(`change:${name}`, changed);
      return () => {
        model.off(`change:${name}`, changed);
        pending?.();
      };
    },
    [model, name, later],
  );
  return useSyncExternalStore(subscribe, () => model.get(name) as T);
}

export function toFlow(graph: PipelineJSON, catalog: Catalog, status: Record<string, NodeStatus>) {
  const nodes: Node<NodeData>[] = graph.nodes.map((n, i) => {
    const ports = portsOf(n, catalog);
    const op = operatorOf(n, catalog);
    return {
      id: n.id,
      type: n.type === "display" ? "display" : "operator",
      position: n.position ?? { x: 40 + 220 * i, y: 40 },
      data: {
        node: n,
        title: n.type === "display" ? `${n.display} display` : (op?.name ?? n.image ?? "?"),
        inputs: ports?.input ?? {},
        outputs: ports?.output ?? {},
        status: status[n.id],
        unknown: !ports,
      },
    };
  });
  const edges: Edge[] = graph.edges.map((e) => ({
    id: `${e.from.id}.${e.from.port}->${e.to.id}.${e.to.port}`,
    source: e.from.id,
    sourceHandle: e.from.port,
    target: e.to.id,
    targetHandle: e.to.port,
    style: { stroke: PORT_COLORS[e.type ?? "data"] ?? "#555", strokeWidth: 2 },
  }));
  return { nodes, edges };
}

const NO_OPS: OperatorInfo[] = [];
const NO_EXAMPLES: Example[] = [];

/** True when the screen rectangle tl..br lies inside `box`, `margin` pixels in. */
function isInside(box: { left: number; top: number; right: number; bottom: number }, tl: { x: number; y: number }, br: { x: number; y: number }, margin = 0): boolean {
  return tl.x >= box.left + margin && tl.y >= box.top + margin && br.x <= box.right - margin && br.y <= box.bottom - margin;
}

function Inner({ model, channel, transport }: { model: Model; channel: Channel; transport: DirectTransport }) {
  const graph = useTrait<PipelineJSON>(model, "graph");
  const operators = useTrait<OperatorInfo[]>(model, "operators");
  const status = useTrait<Record<string, NodeStatus>>(model, "status", true);
  const height = useTrait<number>(model, "height");
  const examples = useTrait<Example[]>(model, "examples") ?? NO_EXAMPLES;
  const catalog = useMemo(() => makeCatalog(operators ?? []), [operators]);
  const history = useRef(new History()).current;
  // Bumped when the undo history changes: only the Undo and Redo buttons re-render.
  const historyVersion = useRef(new Store(0)).current;
  const historyChanged = useCallback(() => historyVersion.update((v) => v + 1), [historyVersion]);
  const [message, setMessage] = useState<{ text: string; kind: "error" | "info" } | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  // Per parameter control ("node.param"): the kernel's last refusal, a request in flight,
  // and a counter that makes the control drop its own value for the kernel's.
  const controls = useRef(new Store<Record<string, ControlState>>({})).current;
  const [lost, setLost] = useState(false);
  // How requests travel now (the comm, or the direct path): shown as data-requests.
  const watchTransport = useCallback((cb: () => void) => transport.watch(cb), [transport]);
  const requestsVia = useSyncExternalStore(watchTransport, () => transport.state);
  const flow = useReactFlow();
  const wrapper = useRef<HTMLDivElement>(null);
  const root = useRef<HTMLDivElement>(null);
  const graphRef = useRef(graph);
  graphRef.current = graph;

  // Local node state so drags are smooth; rebuilt whenever the kernel's graph changes.
  // Unchanged nodes keep their objects (and an unchanged list its array), so React Flow
  // re-renders only what changed, and nothing on a parameter change. (Edges are rebuilt:
  // React Flow draws them again only when it gets a new list.)
  const previous = useRef(new Map<string, { sig: string; node: Node<NodeData> }>());
  const built = useMemo(() => {
    const fresh = toFlow(graph, catalog, status ?? {});
    const kept = new Map<string, { sig: string; node: Node<NodeData> }>();
    fresh.nodes = fresh.nodes.map((n) => {
      // Parameters are not drawn on the node: a slider step must not re-render it (the panel shows them).
      const { params: _, ...shown } = n.data.node;
      const sig = JSON.stringify([n.type, n.position, shown, n.data.status, n.data.title, n.data.unknown]);
      const old = previous.current.get(n.id);
      const node = old && old.sig === sig ? old.node : n;
      kept.set(n.id, { sig, node });
      return node;
    });
    previous.current = kept;
    return fresh;
  }, [graph, catalog, status]);
  const [nodes, setNodes] = useState<Node<NodeData>[]>(built.nodes);
  const passed = useRef<{ nodes: Node<NodeData>[]; selected: string | null }>({ nodes: built.nodes, selected: null });
  useEffect(() => {
    // Nothing of what the canvas draws changed (e.g. a parameter step): keep React Flow's own
    // (measured) nodes, so it does not render and measure again.
    if (sameItems(passed.current.nodes, built.nodes) && passed.current.selected === selected) return;
    passed.current = { nodes: built.nodes, selected };
    setNodes((current) => {
      // A rebuilt node (e.g. its status changed) keeps the size React Flow measured: without
      // it the node is hidden until measured again, and its resize observer fires only if
      // its size changes.
      const measured = new Map(current.map((n) => [n.id, n.measured]));
      return built.nodes.map((n) => {
        n.measured ??= measured.get(n.id); // our own object from toFlow, kept while unchanged
        return Boolean(n.selected) === (n.id === selected) ? n : { ...n, selected: n.id === selected };
      });
    });
  }, [built, selected]);

  // The panel docks beside the canvas, which narrows it: keep the node being edited in view.
  useEffect(() => {
    if (!selected) return;
    const timer = setTimeout(() => {
      const n = flow.getInternalNode(selected);
      const box = wrapper.current?.getBoundingClientRect();
      if (!n || !box) return;
      const { x, y } = n.internals.positionAbsolute;
      const [w, h] = [n.measured.width ?? NODE_WIDTH, n.measured.height ?? 64];
      if (!isInside(box, flow.flowToScreenPosition({ x, y }), flow.flowToScreenPosition({ x: x + w, y: y + h }), 8)) {
        void flow.setCenter(x + w / 2, y + h / 2, { zoom: flow.getViewport().zoom });
      }
    }, 80); // after React Flow has measured the narrower canvas
    return () => clearTimeout(timer);
  }, [selected, flow]);

  const show = (text: string, kind: "error" | "info" = "error") => setMessage({ text, kind });
  const setControl = useCallback(
    (key: string, change: (c: ControlState) => ControlState) => {
      controls.update((cs) => ({ ...cs, [key]: change(cs[key] ?? { resync: 0 }) }));
    },
    [controls],
  );

  // A request the kernel did not answer: say so in the message bar (each control says so too).
  // When the kernel answers again, ask it for its state: the Python pipeline wins.
  useEffect(
    () =>
      channel.subscribe((e) => {
        if (e.kind === "lost") {
          setLost(true);
          const what = e.request.type === "command" ? e.request.command.op : e.request.type;
          show(
            `The kernel did not answer (${what}): ${e.reply.problems.join("; ")}. ` +
              "The editor keeps the kernel's last pipeline; if the kernel was restarted, run the editor's cell again.",
          );
          return;
        }
        void channel.request({ type: "sync" }).then((r) => {
          if (!r.ok) return;
          setLost(false);
          // Controls still showing a failure take the kernel's value (a moving one keeps its own).
          controls.update((cs) => Object.fromEntries(Object.entries(cs).map(([k, c]) => [k, c.error ? { ...c, resync: c.resync + 1 } : c])));
          show("The kernel answers again; the editor shows its pipeline.", "info");
        });
      }),
    [channel, controls],
  );

  /** Send one command; on success record it for undo (unless `record` is false). */
  const propose = useCallback(
    async (cmd: Command, label: string, record = true): Promise<Reply> => {
      const inv = record ? inverse(graphRef.current, cmd, catalog) : null;
      const reply = await channel.command(cmd);
      // An unanswered request is reported by the channel listener above, with advice.
      if (!reply.ok && !reply.failure) show(reply.problems.join("; ") || "refused");
      else if (record) setMessage(null);
      if (reply.ok && record && inv) {
        history.push({ command: cmd, inverse: inv, label });
        historyChanged();
      }
      return reply;
    },
    [channel, catalog, history, historyChanged],
  );

  // First view of a graph without positions: lay it out once, and save the positions.
  const laidOut = useRef(false);
  useEffect(() => {
    if (!laidOut.current && catalog.size && graph.nodes.length && needsLayout(graph)) {
      laidOut.current = true;
      void propose({ op: "layout", positions: autoLayout(graph, catalog) }, "layout", false).then(() =>
        requestAnimationFrame(() => flow.fitView({ padding: 0.08, maxZoom: 1.2 })),
      );
    }
  }, [graph, catalog]);

  // Parameter edits, one stream per control (see params.ts): undo is recorded on acceptance.
  const streams = useRef(new Map<string, ParamStream>()).current;
  const catalogRef = useRef(catalog);
  catalogRef.current = catalog;
  /** Undo/redo first closes every gesture and waits for its replies, so its entry is on the stack. */
  const settle = useCallback(async () => {
    for (const s of streams.values()) s.end();
    await Promise.all([...streams.values()].map((s) => s.idle()));
  }, [streams]);

  const undo = useCallback(async () => {
    await settle();
    const e = history.peekUndo();
    if (!e) return;
    const r = await channel.command(e.inverse);
    if (r.ok) history.confirmUndo();
    else show(`cannot undo ${e.label}: ${r.problems.join("; ")}`);
    historyChanged();
  }, [channel, history, settle, historyChanged]);
  const redo = useCallback(async () => {
    await settle();
    const e = history.peekRedo();
    if (!e) return;
    const r = await channel.command(e.command);
    if (r.ok) history.confirmRedo();
    else show(`cannot redo ${e.label}: ${r.problems.join("; ")}`);
    historyChanged();
  }, [channel, history, settle, historyChanged]);

  const onConnect = useCallback(
    (c: Connection) => {
      const problem = connectionProblem(graphRef.current, catalog, c.source, c.sourceHandle ?? "", c.target, c.targetHandle ?? "");
      if (problem) {
        show(`Refused: ${problem}`);
        return;
      }
      setMessage(null);
      void propose(
        { op: "connect", from: { id: c.source, port: c.sourceHandle ?? "" }, to: { id: c.target, port: c.targetHandle ?? "" } },
        "connect",
      );
    },
    [catalog, propose],
  );

  const onNodesChange = useCallback((changes: NodeChange<Node<NodeData>>[]) => {
    // Removals go through the kernel (onDelete); positions and selection stay local until drop.
    setNodes((ns) => applyNodeChanges(changes.filter((c) => c.type !== "remove"), ns));
    for (const c of changes) if (c.type === "select" && c.selected) setSelected(c.id);
  }, []);

  const onDelete = useCallback(
    ({ nodes: ns, edges: es }: { nodes: Node[]; edges: Edge[] }) => {
      const removedNodes = new Set(ns.map((n) => n.id));
      const commands: Command[] = es
        .filter((e) => !removedNodes.has(e.source) && !removedNodes.has(e.target))
        .map((e) => ({ op: "disconnect", from: { id: e.source, port: e.sourceHandle! }, to: { id: e.target, port: e.targetHandle! } }));
      for (const id of removedNodes) commands.push({ op: "remove_node", id });
      if (!commands.length) return;
      if (selected && removedNodes.has(selected)) setSelected(null);
      // The focused node is about to vanish: keep keyboard focus (Ctrl+Z) in the editor.
      root.current?.focus({ preventScroll: true });
      void propose(commands.length === 1 ? commands[0] : { op: "batch", commands }, "delete");
    },
    [propose, selected],
  );

  const addItem = useCallback(
    (item: PaletteItem, position?: { x: number; y: number }) => {
      const id = freshId(graphRef.current, item);
      // Dropped: where the pointer is. Added by keyboard or double-click: near the top left
      // of the view, below any node that would be covered.
      const box = wrapper.current?.getBoundingClientRect();
      const pos =
        position ??
        freeSpot(
          flow.screenToFlowPosition({ x: (box?.left ?? 0) + 60, y: (box?.top ?? 0) + 40 }),
          flow.getNodes().map((n) => ({ ...n.position, width: n.measured?.width ?? NODE_WIDTH, height: n.measured?.height ?? 64 })),
          { width: NODE_WIDTH, height: 84 },
        );
      const cmd: Command = { op: "add_node", id, position: { x: Math.round(pos.x), y: Math.round(pos.y) } };
      if (item.display) cmd.display = item.display;
      else cmd.image = item.image;
      void propose(cmd, `add ${id}`).then((r) => r.ok && setSelected(id));
    },
    [flow, propose],
  );

  const streamOf = useCallback(
    (id: string, name: string): ParamStream => {
      const key = `${id}.${name}`;
      let stream = streams.get(key);
      if (!stream) {
        stream = new ParamStream({
          id,
          name,
          history,
          send: (cmd) => channel.command(cmd),
          // The kernel's graph as last received: the value a gesture starts from.
          inverseNow: (cmd) => inverse(model.get("graph") as PipelineJSON, cmd, catalogRef.current),
          onBusy: (busy) => setControl(key, (c) => ({ ...c, pending: busy })),
          onRecord: historyChanged,
          onReply: (r) =>
            setControl(key, (c) =>
              r.ok ? { ...c, error: undefined } : { ...c, error: r.problems.join("; ") || "refused", resync: c.resync + 1 },
            ),
        });
        streams.set(key, stream);
      }
      return stream;
    },
    [channel, history, model, setControl, streams, historyChanged],
  );

  const exportJSON = useCallback(() => {
    const text = JSON.stringify(graphRef.current, null, 2) + "\n";
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    a.download = String(model.get("filename") || "pipeline.json");
    document.body.appendChild(a);
    a.click();
    setTimeout(() => {
      URL.revokeObjectURL(a.href);
      a.remove();
    }, 1000);
  }, [model]);

  const importJSON = useCallback(
    (file: File) => {
      void file.text().then((text) => {
        let doc: PipelineJSON;
        try {
          doc = JSON.parse(text);
        } catch (e) {
          show(`Import failed: ${file.name} is not JSON (${String(e)})`);
          return;
        }
        laidOut.current = false;
        void propose({ op: "replace", graph: doc }, `import ${file.name}`).then((r) => r.ok && show(`Imported ${file.name}`, "info"));
      });
    },
    [propose],
  );

  const onNodeDragStop = useCallback(
    (_: unknown, node: Node, dragged?: Node[]) => {
      const moved = (dragged?.length ? dragged : [node]).map(
        (n): Command => ({ op: "set_position", id: n.id, x: Math.round(n.position.x), y: Math.round(n.position.y) }),
      );
      void propose(moved.length === 1 ? moved[0] : { op: "batch", commands: moved }, "move");
    },
    [propose],
  );

  const runNow = useCallback(() => {
    void channel.request({ type: "run" }).then((r) => {
      if (!r.ok && !r.failure) show(r.problems.join("; ") || "cannot run");
    });
  }, [channel]);

  const loadExample = useCallback(
    (name: string) => {
      const example = examples.find((e) => e.name === name);
      if (!example) return;
      laidOut.current = false;
      setSelected(null);
      void propose({ op: "replace", graph: structuredClone(example.graph) }, `example ${name}`).then((r) => {
        if (!r.ok) return;
        show(`Loaded example ${name}${example.description ? `: ${example.description}` : ""}`, "info");
        requestAnimationFrame(() => flow.fitView({ padding: 0.08, maxZoom: 1.2 }));
      });
    },
    [examples, propose, flow],
  );

  const selNode = graph.nodes.find((n) => n.id === selected);
  const displayIds = graph.nodes.filter((n) => n.type === "display").map((n) => n.id);

  return (
    <div
      ref={root}
      className="oremda-editor"
      data-lm-suppress-shortcuts="true"
      data-kernel={lost ? "lost" : "ok"}
      data-requests={requestsVia}
      data-request-timeout-ms={REQUEST_TIMEOUT_MS}
      tabIndex={-1}
      onFocus={(e) => {
        // Notebook 7 matches its shortcuts in the capture phase, before this element sees the
        // key, and from the focused element upwards: a selector ending in `:focus` (ArrowRight:
        // "move-cursor-heading-below-or-expand") matches a focused slider before the walk
        // reaches the root's data-lm-suppress-shortcuts. Marked, the focused element stops the
        // walk where it starts. (JupyterLab listens in the bubble phase, after onKeyDown below.)
        e.target.setAttribute("data-lm-suppress-shortcuts", "true");
      }}
      onKeyDown={(e) => {
        const mod = e.ctrlKey || e.metaKey;
        if (mod && e.key.toLowerCase() === "z") {
          e.preventDefault();
          void (e.shiftKey ? redo() : undo());
        } else if (mod && e.key.toLowerCase() === "y") {
          e.preventDefault();
          void redo();
        } else if ((e.key === "Delete" || e.key === "Backspace") && !isTextTarget(e.target)) {
          e.preventDefault();
          onDelete({ nodes: flow.getNodes().filter((n) => n.selected), edges: flow.getEdges().filter((x) => x.selected) });
        }
        // Keys stay inside the editor (the notebook would move between cells on arrows);
        // modifiers still reach React Flow's document listeners (Shift box selection).
        if (!["Shift", "Control", "Meta", "Alt"].includes(e.key)) e.stopPropagation();
      }}
    >
      <div className="oremda-toolbar">
        <HistoryButtons history={history} version={historyVersion} undo={undo} redo={redo} />
        <button
          data-action="layout"
          onClick={() => void propose({ op: "layout", positions: autoLayout(graphRef.current, catalog) }, "layout").then(() => requestAnimationFrame(() => flow.fitView({ padding: 0.08, maxZoom: 1.2 })))}
        >
          Auto layout
        </button>
        <button data-action="export" onClick={exportJSON}>
          Export JSON
        </button>
        <label className="oremda-import">
          Import JSON
          <input type="file" accept=".json,application/json" data-action="import" onChange={(e) => e.target.files?.[0] && importJSON(e.target.files[0])} />
        </label>
        {examples.length ? (
          <select
            className="oremda-examples"
            data-action="examples"
            value=""
            title="Load a bundled example pipeline (undo brings yours back)"
            onChange={(e) => loadExample(e.target.value)}
          >
            <option value="" disabled>
              Examples…
            </option>
            {examples.map((x) => (
              <option key={x.name} value={x.name} title={x.description}>
                {x.name}
              </option>
            ))}
          </select>
        ) : null}
        <RunBar model={model} onRun={runNow} />
      </div>
      {message ? (
        <div className={`oremda-message oremda-message-${message.kind}`} data-message={message.kind}>
          {message.text}
          <button onClick={() => setMessage(null)}>×</button>
        </div>
      ) : null}
      <RunProblems model={model} />
      <div className={`oremda-main${selNode ? " with-side" : ""}`} style={{ height: height || 460 }}>
        <Palette ops={operators ?? NO_OPS} onAdd={addItem} />
        <div
          className="oremda-canvas-wrap"
          ref={wrapper}
          onDragOver={(e) => {
            e.preventDefault();
            e.dataTransfer.dropEffect = "move";
          }}
          onDrop={(e) => {
            e.preventDefault();
            const raw = e.dataTransfer.getData(DRAG_MIME);
            if (raw) addItem(JSON.parse(raw), flow.screenToFlowPosition({ x: e.clientX, y: e.clientY }));
          }}
        >
          <Canvas
            nodes={nodes}
            edges={built.edges}
            onNodesChange={onNodesChange}
            onNodeDragStop={onNodeDragStop}
            onConnect={onConnect}
            onDelete={onDelete}
            onSelect={setSelected}
          />
          {selNode ? null : (
            <div className="oremda-muted oremda-hint">
              Click a node to edit its parameters. Drag operators from the palette; drag from an output port to an input
              port to connect.
            </div>
          )}
        </div>
        {/* Docked beside the canvas (a third grid column), so it never covers the node being edited. */}
        {selNode ? (
          <div className="oremda-side nowheel">
            <button className="oremda-side-close" title="Close" onClick={() => setSelected(null)}>
              ×
            </button>
            <ParamPanel
              node={selNode}
              op={operatorOf(selNode, catalog)}
              controls={controls}
              onChange={(name, value) => streamOf(selNode.id, name).change(value)}
              onGesture={(name, phase) => (phase === "begin" ? streamOf(selNode.id, name).begin() : streamOf(selNode.id, name).end())}
              onDelete={() => onDelete({ nodes: [{ id: selNode.id } as Node], edges: [] })}
            />
          </div>
        ) : null}
      </div>
      <DisplaysOf model={model} ids={displayIds} />
    </div>
  );
}

const FIT_VIEW = { padding: 0.08, maxZoom: 1.2 };
const PRO_OPTIONS = { hideAttribution: true };

/** True when two lists hold the same objects in the same order. */
function sameItems<T>(a: readonly T[], b: readonly T[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The React Flow canvas; with the same props (a parameter change, a run state) it does not render. */
const Canvas = memo(function Canvas({
  nodes,
  edges,
  onNodesChange,
  onNodeDragStop,
  onConnect,
  onDelete,
  onSelect,
}: {
  nodes: Node<NodeData>[];
  edges: Edge[];
  onNodesChange: (changes: NodeChange<Node<NodeData>>[]) => void;
  onNodeDragStop: (event: unknown, node: Node, dragged?: Node[]) => void;
  onConnect: (c: Connection) => void;
  onDelete: (removed: { nodes: Node[]; edges: Edge[] }) => void;
  onSelect: (id: string | null) => void;
}) {
  return (
    <ReactFlow
      nodes={nodes}
      edges={edges}
      nodeTypes={nodeTypes}
      onNodesChange={onNodesChange}
      onNodeDragStop={onNodeDragStop}
      onConnect={onConnect}
      onDelete={onDelete}
      onPaneClick={() => onSelect(null)}
      onNodeClick={(_, n) => onSelect(n.id)}
      deleteKeyCode={null}
      fitView
      fitViewOptions={FIT_VIEW}
      minZoom={0.2}
      proOptions={PRO_OPTIONS}
    >
      <Background gap={16} />
      <Controls showInteractive={false} />
    </ReactFlow>
  );
});

/** Undo and Redo, enabled as the history allows; re-rendered when the history changes. */
const HistoryButtons = memo(function HistoryButtons({
  history,
  version,
  undo,
  redo,
}: {
  history: History;
  version: Store<number>;
  undo: () => Promise<void>;
  redo: () => Promise<void>;
}) {
  useStore(version);
  return (
    <>
      <button data-action="undo" disabled={!history.canUndo()} onClick={() => void undo()} title="Undo (Ctrl+Z)">
        Undo
      </button>
      <button data-action="redo" disabled={!history.canRedo()} onClick={() => void redo()} title="Redo (Ctrl+Shift+Z)">
        Redo
      </button>
    </>
  );
});

/** The run's state (and the Run button when auto_run is off): the only part a run-state message re-renders. */
const RunBar = memo(function RunBar({ model, onRun }: { model: Model; onRun: () => void }) {
  const run = useTrait<RunState>(model, "run", true);
  const autoRun = useTrait<boolean>(model, "auto_run") ?? true;
  const busy = run?.state === "starting" || run?.state === "running";
  return (
    <>
      {autoRun ? null : (
        <button data-action="run" onClick={onRun} disabled={busy} title="Run the pipeline (auto_run is off)">
          Run
        </button>
      )}
      <span
        className={`oremda-run oremda-run-${run?.state ?? "idle"}`}
        data-run-state={run?.state ?? "idle"}
        data-kernel-ms={run?.kernel_s != null ? Math.round(run.kernel_s * 1000) : undefined}
      >
        {busy ? <span className="oremda-spinner" /> : null}
        {runLabel(run)}
      </span>
    </>
  );
});

/** What keeps the pipeline from running whole, as the kernel listed it with the run state. */
const RunProblems = memo(function RunProblems({ model }: { model: Model }) {
  const problems = useTrait<RunState>(model, "run", true)?.problems;
  return problems?.length ? (
    <div className="oremda-problems" data-problems>
      {problems.map((p) => (
        <div key={p}>{p}</div>
      ))}
    </div>
  ) : null;
});

/** The display nodes' output: a new picture re-renders this part only (`ids` compared by value). */
const DisplaysOf = memo(
  function DisplaysOf({ model, ids }: { model: Model; ids: string[] }) {
    const displays = useTrait<Record<string, DisplayPayload>>(model, "displays");
    return <Displays ids={ids} displays={displays} />;
  },
  (a, b) => a.model === b.model && a.ids.join("\n") === b.ids.join("\n"),
);

function isTextTarget(t: EventTarget | null): boolean {
  const el = t as HTMLElement | null;
  return !!el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
}

function runLabel(run?: RunState): string {
  if (!run) return "";
  const t = run.elapsed_s != null ? ` (${formatDuration(run.elapsed_s)})` : "";
  switch (run.state) {
    case "starting":
      return run.message || "starting workers…";
    case "running":
      return run.message || "running…";
    case "done":
      return `done${t}`;
    case "error":
      return `error${run.message ? ": " + run.message : ""}`;
    case "invalid":
      return "not runnable yet";
    default:
      return run.message ?? "";
  }
}

export function Editor({ model }: { model: Model }) {
  const transport = useMemo(() => new DirectTransport(model), [model]);
  const channel = useMemo(() => new Channel(transport), [transport]);
  useEffect(
    () => () => {
      channel.dispose();
      transport.dispose();
    },
    [channel, transport],
  );
  return (
    <ReactFlowProvider>
      <Inner model={model} channel={channel} transport={transport} />
    </ReactFlowProvider>
  );
}
