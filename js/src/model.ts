/** The anywidget model contract, and a small request/reply channel over custom messages. */
import type { Command, Reply } from "./types";

/** The subset of anywidget's AnyModel the editor uses (see anywidget packages/types). */
export interface Model {
  get(name: string): any;
  set(name: string, value: unknown): void;
  save_changes(): void;
  on(event: string, cb: (...args: any[]) => void): void;
  off(event?: string | null, cb?: ((...args: any[]) => void) | null): void;
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
}

/** Sends commands to the kernel and resolves each with the kernel's reply. */
export class Channel {
  private next = 1;
  private pending = new Map<number, (r: Reply) => void>();
  private readonly onMsg = (msg: any) => {
    if (msg?.type === "reply") {
      trace("reply");
      const resolve = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      resolve?.(msg as Reply);
    }
  };
  constructor(private readonly model: Model) {
    model.on("msg:custom", this.onMsg);
  }
  command(command: Command): Promise<Reply> {
    const id = this.next++;
    trace(`send ${command.op}`);
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.model.send({ type: "command", id, command });
    });
  }
  dispose(): void {
    this.model.off("msg:custom", this.onMsg);
    this.pending.clear();
  }
}

/**
 * Newest-wins sender for a stream of values (a slider drag): at most one in flight,
 * and while it is, only the latest value waits. The engine coalesces runs as well.
 */
export class Coalescer<T> {
  private inflight = false;
  private queued: { value: T } | null = null;
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
    });
  }
}

/** Timing marks for the latency benchmark: recorded only when the page defines `window.__oremdaTrace`. */
export function trace(label: string): void {
  const t = (globalThis as { __oremdaTrace?: [string, number][] }).__oremdaTrace;
  if (t) t.push([label, performance.now()]);
}
