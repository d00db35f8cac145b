import { test } from "node:test";
import assert from "node:assert/strict";
import { DirectTransport, directUrl, type SocketLike } from "../src/direct.ts";
import { Channel, type ChannelEvent } from "../src/model.ts";

/** A page of a Jupyter server: its config element and location. */
function page(config: object | null, href = "http://host:8888/user/ann/lab/tree/a.ipynb"): Document {
  return {
    getElementById: (id: string) => (id === "jupyter-config-data" && config ? { textContent: JSON.stringify(config) } : null),
    location: { href },
  } as unknown as Document;
}

/** The widget model: traits, and the comm (what was sent over it, who listens). */
class FakeModel {
  traits: Record<string, unknown>;
  comm: any[] = [];
  private handlers = new Map<string, Set<(...a: any[]) => void>>();
  constructor(direct: object) {
    this.traits = { direct };
  }
  get(name: string) {
    return this.traits[name];
  }
  set(name: string, value: unknown) {
    this.traits[name] = value;
    for (const h of this.handlers.get(`change:${name}`) ?? []) h();
  }
  save_changes() {}
  on(event: string, cb: (...a: any[]) => void) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event)!.add(cb);
  }
  off(event?: string | null, cb?: ((...a: any[]) => void) | null) {
    if (event && cb) this.handlers.get(event)?.delete(cb);
  }
  send(content: unknown) {
    this.comm.push(content);
  }
  /** A reply from the kernel over the comm. */
  reply(msg: unknown) {
    for (const h of this.handlers.get("msg:custom") ?? []) h(msg);
  }
}

/** The relay's websocket: what the page sent on it, and the kernel's side of it. */
class FakeSocket implements SocketLike {
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: (() => void) | null = null;
  onerror: (() => void) | null = null;
  sent: any[] = [];
  closed = false;
  constructor(readonly url: string) {}
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.closed = true;
  }
  kernelSays(msg: unknown) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
}

const INFO = { socket: "/tmp/oremda-lab-direct-abc/socket", key: "k3y" };

function setUp(config: object | null = { baseUrl: "/user/ann/", token: "tok" }, info: object = INFO) {
  const model = new FakeModel(info);
  const sockets: FakeSocket[] = [];
  const transport = new DirectTransport(model as any, (url) => {
    const s = new FakeSocket(url);
    sockets.push(s);
    return s;
  }, page(config));
  const channel = new Channel(transport);
  const events: ChannelEvent[] = [];
  channel.subscribe((e) => events.push(e));
  return { model, sockets, transport, channel, events };
}

function greet(s: FakeSocket, ok = true) {
  s.onopen?.();
  assert.deepEqual(s.sent.shift(), { hello: "k3y" });
  s.kernelSays({ type: "hello", ok });
}

const SET = { op: "set_param", id: "blur", name: "sigma", value: 3 } as const;

test("directUrl: the relay under the server's base URL, with its token, ws or wss like the page", () => {
  const url = new URL(directUrl(INFO, page({ baseUrl: "/user/ann/", token: "tok" }))!);
  assert.equal(url.origin + url.pathname, "ws://host:8888/user/ann/oremda-lab/direct");
  assert.equal(url.searchParams.get("socket"), INFO.socket);
  assert.equal(url.searchParams.get("token"), "tok");
  const secure = new URL(directUrl(INFO, page({ baseUrl: "/" }, "https://hub.example/lab"))!);
  assert.equal(secure.href.split("?")[0], "wss://hub.example/oremda-lab/direct");
  assert.equal(secure.searchParams.get("token"), null);
  assert.equal(directUrl(INFO, page(null)), null, "no Jupyter server page (another front end)");
  assert.equal(directUrl({}, page({ baseUrl: "/" })), null, "the kernel offers no direct path");
});

test("requests use the comm until the kernel greets the direct path, then the direct path", async () => {
  const { model, sockets, transport, channel } = setUp();
  assert.equal(sockets.length, 1);
  assert.equal(transport.state, "connecting");
  const early = channel.command(SET);
  assert.equal(model.comm.length, 1, "not greeted yet: the comm");
  model.reply({ type: "reply", id: model.comm[0].id, ok: true, problems: [] });
  assert.equal((await early).ok, true);

  greet(sockets[0]);
  assert.equal(transport.state, "direct");
  const later = channel.command({ ...SET, value: 4 });
  assert.equal(model.comm.length, 1, "greeted: nothing more on the comm");
  const sent = sockets[0].sent.shift();
  assert.deepEqual(sent.command, { ...SET, value: 4 });
  sockets[0].kernelSays({ type: "reply", id: sent.id, ok: false, problems: ["refused"] });
  assert.deepEqual((await later).problems, ["refused"]);
});

test("a refused greeting, an error or no server page keep the comm", () => {
  const refused = setUp();
  greet(refused.sockets[0], false);
  assert.equal(refused.transport.state, "comm");
  assert.ok(refused.sockets[0].closed);
  void refused.channel.command(SET);
  assert.equal(refused.model.comm.length, 1);

  const failing = setUp();
  failing.sockets[0].onerror?.();
  assert.equal(failing.transport.state, "comm");

  const elsewhere = setUp(null);
  assert.equal(elsewhere.sockets.length, 0);
  assert.equal(elsewhere.transport.state, "comm");
});

test("a request in flight when the direct path closes fails at once; the next one takes the comm", async () => {
  const { model, sockets, transport, channel, events } = setUp();
  greet(sockets[0]);
  const inflight = channel.command(SET);
  sockets[0].onclose?.();
  const reply = await inflight; // no waiting for the request timeout
  assert.equal(reply.ok, false);
  assert.equal(reply.failure, "unsent");
  assert.match(reply.problems[0], /direct connection/);
  assert.equal(events[0]?.kind, "lost");
  assert.equal(transport.state, "comm");
  void channel.command({ ...SET, value: 5 });
  assert.equal(model.comm.length, 1);
  model.reply({ type: "reply", id: model.comm[0].id, ok: true, problems: [] });
  assert.equal(events[1]?.kind, "back", "the kernel answers again: the editor re-syncs");
});

test("the direct trait switches the path off and on; dispose closes it", () => {
  const { model, sockets, transport } = setUp();
  greet(sockets[0]);
  const states: string[] = [];
  transport.watch((s) => states.push(s));
  model.set("direct", {});
  assert.ok(sockets[0].closed);
  assert.equal(transport.state, "comm");
  model.set("direct", INFO);
  assert.equal(sockets.length, 2);
  greet(sockets[1]);
  assert.deepEqual(states, ["comm", "connecting", "direct"]);
  transport.dispose();
  assert.ok(sockets[1].closed);
});
