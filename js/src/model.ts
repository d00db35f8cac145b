/**
 * The anywidget model contract, and the request channel over custom messages.
 *
 * State and policy: every request carries an id and waits at most REQUEST_TIMEOUT_MS for
 * the kernel's reply. A request that is not answered in time (or cannot be sent) resolves
 * as a failed Reply with `failure` set, so no caller ever waits forever; the channel is
 * then "lost" until any reply arrives again (a late one counts: the kernel is back).
 * Listeners hear both transitions, which is how the editor shows and clears its message bar.
 */
import type { Command, Reply } from "./types";

/** How long a request waits for the kernel's reply (the one place this is set). */
export const REQUEST_TIMEOUT_MS = 10_000;

/** The subset of anywidget's AnyModel the editor uses (see anywidget packages/types). */
export interface Model {
  get(name: string): any;
  set(name: string, value: unknown): void;
  save_changes(): void;
  on(event: string, cb: (...args: any[]) => void): void;
  off(event?: string | null, cb?: ((...args: any[]) => void) | null): void;
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
}

/** What the channel needs of the model: send, and hear custom messages. Tests pass a fake. */
export type Transport = Pick<Model, "on" | "off" | "send">;

/** Timers, injectable so tests drive time instead of waiting for it. */
export interface Timers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}
const REAL_TIMERS: Timers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/**
 * A request body: an edit command, `sync` (the kernel re-sends its pipeline and state), or
 * `run` (submit the pipeline now: the Run button when auto_run is off).
 */
export type Request = { type: "command"; command: Command } | { type: "sync" } | { type: "run" };

/** `lost`: a request went unanswered; `back`: a reply arrived after that. */
export type ChannelEvent = { kind: "lost"; reply: Reply; request: Request } | { kind: "back" };

/** Sends requests to the kernel and resolves each with its reply, or a failure after the timeout. */
export class Channel {
  private next = 1;
  private pending = new Map<number, { resolve: (r: Reply) => void; timer: unknown; fail: (problem: string) => void }>();
  private listeners = new Set<(e: ChannelEvent) => void>();
  /** True from an unanswered request until the next reply from the kernel. */
  lost = false;
  private readonly timeoutMs: number;
  private readonly timers: Timers;
  private readonly onMsg = (msg: any) => {
    if (msg?.type === "undelivered") {
      // The transport lost the request on the way (see DirectTransport): fail it now.
      this.pending.get(msg.id)?.fail(String(msg.problem ?? "the request was not delivered"));
      return;
    }
    if (msg?.type !== "reply") return;
    trace("reply");
    if (this.lost) {
      this.lost = false;
      this.emit({ kind: "back" });
    }
    const p = this.pending.get(msg.id);
    if (!p) return; // a late reply to a request that already failed: the graph trait carries its effect
    this.pending.delete(msg.id);
    this.timers.clear(p.timer);
    p.resolve(msg as Reply);
  };

  constructor(
    private readonly transport: Transport,
    { timeoutMs = REQUEST_TIMEOUT_MS, timers = REAL_TIMERS }: { timeoutMs?: number; timers?: Timers } = {},
  ) {
    this.timeoutMs = timeoutMs;
    this.timers = timers;
    transport.on("msg:custom", this.onMsg);
  }

  request(body: Request): Promise<Reply> {
    const id = this.next++;
    trace(`send ${body.type === "command" ? body.command.op : body.type}`);
    return new Promise((resolve) => {
      const fail = (failure: "timeout" | "unsent", problem: string) => {
        this.pending.delete(id);
        const reply: Reply = { type: "reply", id, ok: false, problems: [problem], failure };
        this.lost = true;
        this.emit({ kind: "lost", reply, request: body });
        resolve(reply);
      };
      const timer = this.timers.set(
        () => fail("timeout", `no answer from the kernel in ${this.timeoutMs / 1000} s (busy, restarted or stopped)`),
        this.timeoutMs,
      );
      const undelivered = (problem: string) => {
        this.timers.clear(timer);
        fail("unsent", problem);
      };
      this.pending.set(id, { resolve, timer, fail: undelivered });
      try {
        this.transport.send({ ...body, id });
      } catch (e) {
        // A closed comm (dead kernel) throws at once: fail now rather than after the timeout.
        this.timers.clear(timer);
        fail("unsent", `cannot reach the kernel: ${e instanceof Error ? e.message : String(e)}`);
      }
    });
  }

  command(command: Command): Promise<Reply> {
    return this.request({ type: "command", command });
  }

  subscribe(listener: (e: ChannelEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: ChannelEvent): void {
    for (const l of this.listeners) l(e);
  }

  dispose(): void {
    this.transport.off("msg:custom", this.onMsg);
    for (const p of this.pending.values()) this.timers.clear(p.timer);
    this.pending.clear();
    this.listeners.clear();
  }
}

/**
 * Newest-wins sender for a stream of values (a slider drag): at most one in flight,
 * and while it is, only the latest value waits. The engine coalesces runs as well.
 */
export class Coalescer<T> {
  private inflight = false;
  private queued: { value: T } | null = null;
  private idlers: (() => void)[] = [];
  constructor(private readonly sendOne: (value: T) => Promise<unknown>) {}
  push(value: T): void {
    if (this.inflight) {
      this.queued = { value };
      return;
    }
    this.inflight = true;
    void this.sendOne(value).finally(() => {
      this.inflight = false;
      const q = this.queued;
      this.queued = null;
      if (q) this.push(q.value);
      else for (const done of this.idlers.splice(0)) done();
    });
  }
  get busy(): boolean {
    return this.inflight;
  }
  /** Resolves once nothing is in flight or waiting. */
  idle(): Promise<void> {
    return this.inflight ? new Promise((r) => this.idlers.push(r)) : Promise.resolve();
  }
}

/** Timing marks for the latency benchmark: recorded only when the page defines `window.__oremdaTrace`. */
export function trace(label: string): void {
  const t = (globalThis as { __oremdaTrace?: [string, number][] }).__oremdaTrace;
  if (t) t.push([label, performance.now()]);
}
