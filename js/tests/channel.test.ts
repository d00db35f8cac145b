import { test } from "node:test";
import assert from "node:assert/strict";
import { Channel, type ChannelEvent, REQUEST_TIMEOUT_MS, type Timers } from "../src/model.ts";
import { GESTURE_MS, ParamStream } from "../src/params.ts";
import { History, inverse } from "../src/commands.ts";
import type { Command, PipelineJSON, Reply } from "../src/types.ts";

/** Time that moves only when the test says so. */
class Clock implements Timers {
  t = 0;
  private due: { at: number; fn: () => void }[] = [];
  set(fn: () => void, ms: number) {
    const timer = { at: this.t + ms, fn };
    this.due.push(timer);
    return timer;
  }
  clear(handle: unknown) {
    this.due = this.due.filter((d) => d !== handle);
  }
  advance(ms: number) {
    this.t += ms;
    for (const d of this.due.filter((x) => x.at <= this.t)) {
      this.clear(d);
      d.fn();
    }
  }
}

/**
 * A kernel on the other end of a fake comm: it applies set_param to its own graph and
 * refuses values below 0 (like ParamSpec's minimum), or drops every message when told to.
 */
class FakeKernel {
  sent: any[] = [];
  drop = false;
  /** Held messages wait for `release` (a slow kernel). */
  hold = false;
  held: any[] = [];
  graph: PipelineJSON = { nodes: [{ id: "blur", image: "oremda/gaussian_blur", params: { sigma: 2 } }], edges: [] };
  private handlers = new Set<(msg: unknown) => void>();
  on(_event: string, cb: (msg: unknown) => void) {
    this.handlers.add(cb);
  }
  off(_event?: string | null, cb?: ((msg: unknown) => void) | null) {
    if (cb) this.handlers.delete(cb);
  }
  send(content: any) {
    this.sent.push(content);
    if (this.drop) return;
    if (this.hold) {
      this.held.push(content);
      return;
    }
    // Replies come back later, as over a websocket.
    queueMicrotask(() => this.answer(content));
  }
  answer(content: any) {
    const cmd = content.command as Command | undefined;
    let reply: Reply = { type: "reply", id: content.id, ok: true, problems: [] };
    if (cmd?.op === "set_param") {
      if (typeof cmd.value === "number" && cmd.value < 0) {
        reply = { ...reply, ok: false, problems: [`blur.sigma: ${cmd.value} is below the minimum 0`] };
      } else this.graph.nodes[0].params = { sigma: cmd.value };
    }
    for (const h of this.handlers) h(reply);
  }
  release() {
    this.hold = false;
    for (const m of this.held.splice(0)) this.answer(m);
  }
  get sigma() {
    return this.graph.nodes[0].params!.sigma;
  }
}

const flush = () => new Promise((r) => setTimeout(r, 0));

function setup() {
  const kernel = new FakeKernel();
  const clock = new Clock();
  const channel = new Channel(kernel, { timers: clock });
  const history = new History();
  const replies: Reply[] = [];
  const busy: boolean[] = [];
  const stream = new ParamStream({
    id: "blur",
    name: "sigma",
    history,
    send: (cmd) => channel.command(cmd),
    inverseNow: (cmd) => inverse(kernel.graph, cmd),
    now: () => clock.t,
    onReply: (r) => replies.push(r),
    onBusy: (b) => busy.push(b),
  });
  return { kernel, clock, channel, history, stream, replies, busy };
}

test("every request carries an id and resolves with the kernel's reply", async () => {
  const { kernel, channel } = setup();
  const a = channel.command({ op: "set_param", id: "blur", name: "sigma", value: 3 });
  const b = channel.request({ type: "sync" });
  assert.deepEqual(kernel.sent.map((m) => [m.type, m.id]), [["command", 1], ["sync", 2]]);
  assert.equal((await a).id, 1);
  assert.equal((await b).id, 2);
});

test("a lost reply becomes a failure after the timeout, and a later reply says the kernel is back", async () => {
  const { kernel, clock, channel } = setup();
  const events: ChannelEvent["kind"][] = [];
  channel.subscribe((e) => events.push(e.kind));
  kernel.drop = true;
  const settled: Reply[] = [];
  void channel.command({ op: "set_param", id: "blur", name: "sigma", value: 3 }).then((r) => settled.push(r));
  clock.advance(REQUEST_TIMEOUT_MS - 1);
  await flush();
  assert.equal(settled.length, 0);
  clock.advance(1);
  await flush();
  assert.equal(settled[0].ok, false);
  assert.equal(settled[0].failure, "timeout");
  assert.match(settled[0].problems[0], /no answer from the kernel in 10 s/);
  assert.deepEqual(events, ["lost"]);
  assert.equal(channel.lost, true);
  // The kernel was only busy: its late reply is dropped (the request already failed) but counts.
  kernel.answer(kernel.sent[0]);
  assert.deepEqual(events, ["lost", "back"]);
  assert.equal(channel.lost, false);
  kernel.drop = false;
  assert.equal((await channel.command({ op: "remove_node", id: "x" })).ok, true);
});

test("a comm that cannot send fails at once", async () => {
  const clock = new Clock();
  const closed = { on() {}, off() {}, send() { throw new Error("Comm is closed"); } };
  const r = await new Channel(closed, { timers: clock }).request({ type: "sync" });
  assert.deepEqual([r.ok, r.failure, r.problems], [false, "unsent", ["cannot reach the kernel: Comm is closed"]]);
});

test("a refused edit leaves nothing on the undo stack; the control hears why", async () => {
  const { kernel, history, stream, replies } = setup();
  stream.change(-1);
  await stream.idle();
  assert.deepEqual(history.size, [0, 0]);
  assert.equal(kernel.sigma, 2);
  assert.deepEqual(replies.map((r) => [r.ok, r.problems[0]]), [[false, "blur.sigma: -1 is below the minimum 0"]]);
});

test("a slider gesture of 20 changes is one undo step, from the value before it to the last", async () => {
  const { kernel, clock, history, stream } = setup();
  stream.begin();
  for (let i = 1; i <= 20; i++) {
    clock.t += 5000; // however slow the drag: pointer down..up is one gesture
    stream.change(2 + i / 10);
    if (i % 7 === 0) await flush(); // some replies arrive mid-gesture
  }
  stream.end();
  await stream.idle();
  assert.equal(kernel.sigma, 4);
  assert.deepEqual(history.size, [1, 0]);
  const entry = history.peekUndo()!;
  assert.deepEqual(entry.command, { op: "set_param", id: "blur", name: "sigma", value: 4 });
  assert.deepEqual(entry.inverse, { op: "set_param", id: "blur", name: "sigma", value: 2 });
  // The next gesture is the next step, and starts from where the last one ended.
  stream.begin();
  stream.change(5);
  stream.end();
  await stream.idle();
  assert.deepEqual(history.size, [2, 0]);
  assert.deepEqual(history.peekUndo()!.inverse, { op: "set_param", id: "blur", name: "sigma", value: 4 });
});

test("a burst of key presses is one undo step; a pause starts the next", async () => {
  const { clock, history, stream } = setup();
  for (let i = 1; i <= 15; i++) {
    clock.t += GESTURE_MS / 10;
    stream.change(2 + i / 10);
  }
  await stream.idle();
  assert.deepEqual(history.size, [1, 0]);
  clock.t += GESTURE_MS;
  stream.change(1);
  await stream.idle();
  assert.deepEqual(history.size, [2, 0]);
  assert.deepEqual(history.peekUndo()!.inverse, { op: "set_param", id: "blur", name: "sigma", value: 3.5 });
});

test("a gesture whose first values are refused records from the value before it", async () => {
  const { history, stream } = setup();
  stream.begin();
  stream.change(-3);
  await stream.idle();
  stream.change(7);
  stream.end();
  await stream.idle();
  assert.deepEqual(history.size, [1, 0]);
  assert.deepEqual(history.peekUndo()!.inverse, { op: "set_param", id: "blur", name: "sigma", value: 2 });
  assert.deepEqual(history.peekUndo()!.command, { op: "set_param", id: "blur", name: "sigma", value: 7 });
});

test("an unanswered control is usable again after the timeout and records nothing", async () => {
  const { kernel, clock, history, stream, replies, busy } = setup();
  kernel.drop = true;
  for (let v = 3; v <= 6; v++) stream.change(v); // one in flight, the newest (6) waits
  assert.deepEqual(kernel.sent.map((m) => m.command.value), [3]);
  clock.advance(REQUEST_TIMEOUT_MS);
  await flush();
  // The waiting value goes out (the control is not frozen) and times out in turn.
  assert.deepEqual(kernel.sent.map((m) => m.command.value), [3, 6]);
  clock.advance(REQUEST_TIMEOUT_MS);
  await stream.idle();
  await flush();
  assert.deepEqual(busy, [true, false]);
  assert.deepEqual(replies.map((r) => r.failure), ["timeout", "timeout"]);
  assert.deepEqual(history.size, [0, 0]);
  // The kernel answers again: the next change goes through and is recorded.
  kernel.drop = false;
  clock.t += GESTURE_MS;
  stream.change(8);
  await stream.idle();
  assert.equal(kernel.sigma, 8);
  assert.deepEqual(history.size, [1, 0]);
});

test("a gesture that starts while the last one is still on its way undoes to where that one ended", async () => {
  const { kernel, clock, history, stream } = setup();
  kernel.hold = true;
  stream.change(3);
  clock.t += GESTURE_MS * 2;
  stream.change(4); // the kernel's graph still says 2: the first value has no answer yet
  kernel.release(); // answers 3; 4 then goes out and is answered at once
  await stream.idle();
  assert.equal(kernel.sigma, 4);
  assert.deepEqual(history.size, [2, 0]);
  assert.deepEqual(history.peekUndo()!.inverse, { op: "set_param", id: "blur", name: "sigma", value: 3 });
  history.confirmUndo();
  assert.deepEqual(history.peekUndo()!.inverse, { op: "set_param", id: "blur", name: "sigma", value: 2 });
});
