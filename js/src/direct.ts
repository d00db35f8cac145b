/**
 * The direct path: the editor's requests over a websocket to the kernel's socket (relayed
 * by the oremda-lab Jupyter server extension), not over the comm. A comm message is a
 * shell message, which the kernel brackets with busy and idle statuses that the page
 * must handle (JupyterLab redraws its kernel indicators); the direct path has none.
 *
 * State and policy: the transport starts on the comm and switches to the direct path once
 * the kernel has greeted it; whenever that path closes or cannot open (no server
 * extension, a kernel on another host, another front end) it is back on the comm for
 * good. A request in flight on a closed path is reported undelivered at once, so the
 * channel shows it as lost and re-syncs when the kernel answers again.
 */
import type { Model, Transport } from "./model";

/** The `direct` trait: the kernel's socket and this editor's key (empty: comm only). */
export interface DirectInfo {
  socket?: string;
  key?: string;
}

export type DirectState = "comm" | "connecting" | "direct";

/** The part of the browser's WebSocket the transport uses (tests pass a fake). */
export interface SocketLike {
  onopen: (() => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: (() => void) | null;
  onerror: (() => void) | null;
  send(data: string): void;
  close(): void;
}

/** The relay's websocket URL for `info` on this page, or null where there is no Jupyter server. */
export function directUrl(info: DirectInfo, doc: Document | undefined = globalThis.document): string | null {
  const el = doc?.getElementById("jupyter-config-data");
  if (!info.socket || !info.key || !el?.textContent) return null;
  let config: { baseUrl?: string; wsUrl?: string; token?: string };
  try {
    config = JSON.parse(el.textContent);
  } catch {
    return null;
  }
  const base = new URL(config.wsUrl || config.baseUrl || "/", doc!.location.href);
  base.protocol = base.protocol === "https:" || base.protocol === "wss:" ? "wss:" : "ws:";
  const url = new URL("oremda-lab/direct", base.href.endsWith("/") ? base.href : base.href + "/");
  url.searchParams.set("socket", info.socket);
  if (config.token) url.searchParams.set("token", config.token);
  return url.href;
}

/**
 * A Transport for the request Channel: the comm, or the direct path while it is open.
 * Replies from either reach the same `msg:custom` listeners.
 */
export class DirectTransport implements Transport {
  state: DirectState = "comm";
  private socket: SocketLike | null = null;
  private inflight = new Set<unknown>();
  private listeners = new Set<(msg: unknown) => void>();
  private watchers = new Set<(state: DirectState) => void>();
  private readonly onTrait = () => this.connect();

  constructor(
    private readonly model: Model,
    private readonly open: (url: string) => SocketLike = (url) => new WebSocket(url) as unknown as SocketLike,
    private readonly doc: Document | undefined = globalThis.document,
  ) {
    model.on("change:direct", this.onTrait);
    this.connect();
  }

  on(event: string, cb: (...args: any[]) => void): void {
    this.model.on(event, cb);
    if (event === "msg:custom") this.listeners.add(cb);
  }

  off(event?: string | null, cb?: ((...args: any[]) => void) | null): void {
    this.model.off(event, cb);
    if (cb) this.listeners.delete(cb);
  }

  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void {
    const id = (content as { id?: unknown })?.id;
    if (this.state === "direct" && this.socket && id !== undefined && !buffers?.length) {
      this.inflight.add(id);
      this.socket.send(JSON.stringify(content));
      return;
    }
    this.model.send(content, callbacks, buffers);
  }

  /** Hear the state's changes (the editor shows it as `data-requests`). */
  watch(cb: (state: DirectState) => void): () => void {
    this.watchers.add(cb);
    return () => this.watchers.delete(cb);
  }

  dispose(): void {
    this.model.off("change:direct", this.onTrait);
    this.close();
    this.listeners.clear();
    this.watchers.clear();
  }

  /** (Re)connect to what the `direct` trait names; with nothing named, the comm only. */
  private connect(): void {
    this.close();
    const info = (this.model.get("direct") ?? {}) as DirectInfo;
    const url = directUrl(info, this.doc); // null without a socket and key, or without a Jupyter server page
    if (!url) return;
    const key = info.key;
    let socket: SocketLike;
    try {
      socket = this.open(url);
    } catch {
      return; // no WebSocket here: the comm
    }
    this.socket = socket;
    this.setState("connecting");
    socket.onopen = () => socket.send(JSON.stringify({ hello: key }));
    socket.onmessage = (ev) => {
      let msg: any;
      try {
        msg = JSON.parse(String(ev.data));
      } catch {
        return;
      }
      if (msg?.type === "hello") {
        if (msg.ok) this.setState("direct");
        else this.close();
        return;
      }
      this.inflight.delete(msg?.id);
      for (const l of this.listeners) l(msg);
    };
    socket.onerror = () => this.close(socket);
    socket.onclose = () => this.close(socket);
  }

  /** Back to the comm; requests in flight on the closed path are reported undelivered. */
  private close(which: SocketLike | null = this.socket): void {
    if (!which || which !== this.socket) return;
    this.socket = null;
    which.onopen = which.onmessage = which.onclose = which.onerror = null;
    try {
      which.close();
    } catch {
      // already closed
    }
    const lost = [...this.inflight];
    this.inflight.clear();
    this.setState("comm");
    for (const id of lost) {
      const msg = { type: "undelivered", id, problem: "the direct connection to the kernel closed" };
      for (const l of this.listeners) l(msg);
    }
  }

  private setState(state: DirectState): void {
    if (state === this.state) return;
    this.state = state;
    for (const w of this.watchers) w(state);
  }
}
