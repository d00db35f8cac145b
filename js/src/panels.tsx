/** The operator palette and the parameter panel generated from a node's schema. */
import { type ReactElement, memo, useEffect, useMemo, useRef, useState } from "react";
import type { Control, NodeJSON, OperatorInfo } from "./types";
import { type Store, useStore } from "./store";

export const DRAG_MIME = "application/x-oremda-operator";

export interface PaletteItem {
  key: string;
  label: string;
  description: string;
  image?: string;
  display?: string;
}

export function paletteItems(ops: OperatorInfo[]): PaletteItem[] {
  const items: PaletteItem[] = ops.map((o) => ({ key: o.name, label: o.name, description: o.description ?? "", image: o.image }));
  items.push({ key: "display2D", label: "2D display", description: "Shows pictures, scatter and vector layers", display: "2D" });
  items.push({ key: "display1D", label: "1D display", description: "Shows plots and histograms", display: "1D" });
  return items;
}

export function filterItems(items: PaletteItem[], query: string): PaletteItem[] {
  const q = query.trim().toLowerCase();
  if (!q) return items;
  return items.filter((i) => i.label.toLowerCase().includes(q) || i.description.toLowerCase().includes(q));
}

/**
 * The palette. Keyboard: Enter in the search box adds the first match, ArrowDown moves into
 * the list; on an item, Enter or Space adds it and the arrows move between items.
 */
export const Palette = memo(function Palette({ ops, onAdd }: { ops: OperatorInfo[]; onAdd: (item: PaletteItem) => void }) {
  const [query, setQuery] = useState("");
  const items = useMemo(() => filterItems(paletteItems(ops), query), [ops, query]);
  const list = useRef<HTMLDivElement>(null);
  const focusItem = (i: number) => (list.current?.children[i] as HTMLElement | undefined)?.focus();
  return (
    <div className="oremda-palette">
      <input
        className="oremda-search"
        placeholder="Search operators"
        value={query}
        onChange={(e) => setQuery(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && items.length) onAdd(items[0]);
          else if (e.key === "ArrowDown") {
            e.preventDefault();
            focusItem(0);
          }
        }}
      />
      <div className="oremda-palette-list" ref={list}>
        {items.map((item, i) => (
          <div
            key={item.key}
            className="oremda-palette-item"
            data-operator={item.key}
            draggable
            tabIndex={0}
            role="button"
            title={`${item.description}\n(drag onto the canvas, double-click or press Enter to add)`}
            onDragStart={(e) => {
              e.dataTransfer.setData(DRAG_MIME, JSON.stringify(item));
              e.dataTransfer.effectAllowed = "move";
            }}
            onDoubleClick={() => onAdd(item)}
            onKeyDown={(e) => {
              if (e.key === "Enter" || e.key === " ") {
                e.preventDefault();
                onAdd(item);
              } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
                e.preventDefault();
                focusItem(i + (e.key === "ArrowDown" ? 1 : -1));
              }
            }}
          >
            <div className="oremda-palette-name">{item.label}</div>
            <div className="oremda-palette-desc">{item.description}</div>
          </div>
        ))}
      </div>
    </div>
  );
});

/** What the editor knows about one parameter control's requests. */
export interface ControlState {
  /** Why the kernel refused the last value, or why it did not answer. */
  error?: string;
  /** A value is on its way to the kernel. */
  pending?: boolean;
  /** Bumped when the control must drop its own value for the kernel's (a refusal, a lost reply). */
  resync: number;
}

export interface ParamPanelProps {
  node: NodeJSON;
  op?: OperatorInfo;
  /** Keyed "node.param"; the panel re-renders when it changes (the canvas does not). */
  controls: Store<Record<string, ControlState>>;
  onChange: (name: string, value: unknown) => void;
  /** A pointer gesture on a slider: its changes are one undo entry. */
  onGesture: (name: string, phase: "begin" | "end") => void;
  onDelete: () => void;
}

export function ParamPanel({ node, op, controls: store, onChange, onGesture, onDelete }: ParamPanelProps) {
  const controls = useStore(store);
  return (
    <div className="oremda-params" data-node={node.id}>
      <div className="oremda-params-head">
        <b>{node.id}</b> <span className="oremda-muted">{op?.name ?? (node.type === "display" ? `${node.display} display` : node.image)}</span>
        <button className="oremda-delete" title="Delete node (Del)" onClick={onDelete}>
          Delete
        </button>
      </div>
      {op?.description ? <div className="oremda-muted oremda-params-desc">{op.description}</div> : null}
      {op && op.controls.length === 0 ? <div className="oremda-muted">No parameters.</div> : null}
      {op?.controls.map((c) => (
        <ParamControl
          key={`${node.id}.${c.name}`}
          control={c}
          value={node.params?.[c.name] ?? c.default}
          state={controls[`${node.id}.${c.name}`]}
          onChange={(v) => onChange(c.name, v)}
          onGesture={(phase) => onGesture(c.name, phase)}
        />
      ))}
    </div>
  );
}

function ParamControl({
  control: c,
  value,
  state,
  onChange,
  onGesture,
}: {
  control: Control;
  value: unknown;
  state?: ControlState;
  onChange: (v: unknown) => void;
  onGesture: (phase: "begin" | "end") => void;
}) {
  const error = state?.error;
  const unit = c.unit ? <span className="oremda-unit">{c.unit}</span> : null;
  let input: ReactElement;
  switch (c.kind) {
    case "slider":
      input = (
        <Slider
          control={c}
          value={value}
          resync={state?.resync ?? 0}
          pending={Boolean(state?.pending)}
          onChange={onChange}
          onGesture={onGesture}
        />
      );
      break;
    case "dropdown":
      input = (
        <select
          data-param={c.name}
          value={JSON.stringify(value ?? null)}
          onChange={(e) => onChange(JSON.parse(e.target.value))}
        >
          {(c.choices ?? []).map((ch) => (
            <option key={JSON.stringify(ch)} value={JSON.stringify(ch)}>
              {String(ch)}
            </option>
          ))}
        </select>
      );
      break;
    case "checkbox":
      input = <input type="checkbox" data-param={c.name} checked={Boolean(value)} onChange={(e) => onChange(e.target.checked)} />;
      break;
    default:
      input = <TextBox control={c} value={value} onChange={onChange} />;
  }
  return (
    <div
      className={`oremda-param${error ? " invalid" : ""}`}
      title={c.description}
      data-param-row={c.name}
      data-pending={state?.pending ? "true" : undefined}
    >
      <label>
        {c.name} {unit}
      </label>
      {input}
      {error ? <div className="oremda-param-error" data-param-error={c.name}>{error}</div> : null}
    </div>
  );
}

/** How long the thumb keeps its own value after a move before the kernel's value wins again. */
export const SLIDER_HOLD_MS = 800;

/**
 * When the thumb may take the kernel's value: never while one of its own values is still
 * on its way (the kernel's is older: keys pressed on a slow machine would then count from
 * a stale value), else SLIDER_HOLD_MS after the last move. Returns the ms to wait, or null.
 */
export function adoptAfter(now: number, lastMove: number, pending: boolean): number | null {
  if (pending) return null;
  return Math.max(0, lastMove + SLIDER_HOLD_MS - now);
}

function Slider({
  control: c,
  value,
  resync,
  pending,
  onChange,
  onGesture,
}: {
  control: Control;
  value: unknown;
  resync: number;
  pending: boolean;
  onChange: (v: unknown) => void;
  onGesture: (phase: "begin" | "end") => void;
}) {
  // The thumb follows the pointer (or keys) at once; replies to older moves must not pull it
  // back, so the kernel's value is adopted only once the user has paused and no value of
  // ours is in flight, or as soon as the kernel refused a value or did not answer (`resync`).
  const num = typeof value === "number" ? value : Array.isArray(value) ? Number(value[0]) : Number(c.default ?? c.min ?? 0);
  const [local, setLocal] = useState(num);
  const lastMove = useRef(0);
  const seenResync = useRef(resync);
  useEffect(() => {
    if (seenResync.current !== resync) {
      seenResync.current = resync;
      lastMove.current = 0;
    }
    const wait = adoptAfter(performance.now(), lastMove.current, pending);
    if (wait === null) return; // runs again when the reply is in
    if (wait === 0) {
      setLocal(num);
      return;
    }
    const timer = setTimeout(() => setLocal(num), wait);
    return () => clearTimeout(timer);
  }, [num, resync, pending]);
  const parse = (s: string) => (c.integer ? Math.round(Number(s)) : Number(s));
  return (
    <div className="oremda-slider">
      <input
        type="range"
        data-param={c.name}
        min={c.min}
        max={c.max}
        step={c.step ?? (c.integer ? 1 : "any")}
        value={local}
        onPointerDown={() => {
          // Pointer down..up is one gesture (one undo entry); the pointer may be released
          // outside the input, so listen on the window.
          onGesture("begin");
          window.addEventListener("pointerup", () => onGesture("end"), { once: true });
        }}
        onChange={(e) => {
          // React's onChange on a range input is the native `input` event: it fires per move.
          lastMove.current = performance.now();
          const v = parse(e.target.value);
          setLocal(v);
          onChange(v);
        }}
      />
      <span className="oremda-slider-value" data-param-value={c.name}>
        {Array.isArray(value) && lastMove.current === 0 ? JSON.stringify(value) : formatNumber(local)}
      </span>
    </div>
  );
}

function formatNumber(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toPrecision(4).replace(/\.?0+$/, "");
}

// A refused or unanswered text keeps what was typed (the error shows below), so it can be fixed or sent again.
function TextBox({ control: c, value, onChange }: { control: Control; value: unknown; onChange: (v: unknown) => void }) {
  const shown = c.kind === "json" || typeof value === "object" ? JSON.stringify(value ?? null) : value == null ? "" : String(value);
  const [text, setText] = useState(shown);
  useEffect(() => setText(shown), [shown]);
  const commit = () => {
    if (text === shown) return;
    onChange(parseValue(c, text));
  };
  return (
    <input
      type="text"
      className="oremda-text"
      data-param={c.name}
      value={text}
      onChange={(e) => setText(e.target.value)}
      onBlur={commit}
      onKeyDown={(e) => {
        if (e.key === "Enter") commit();
      }}
    />
  );
}

/** Text from a box -> the value sent to the kernel (which validates it). */
export function parseValue(c: Control, text: string): unknown {
  const t = text.trim();
  if (c.kind === "number") {
    if (c.per_axis && t.startsWith("[")) return tryJSON(t);
    const n = Number(t);
    return t === "" || Number.isNaN(n) ? t : n;
  }
  if (c.kind === "json") return tryJSON(t);
  return text;
}

function tryJSON(t: string): unknown {
  try {
    return JSON.parse(t);
  } catch {
    return t;
  }
}
