/**
 * One parameter control's edits: newest-wins sending, gestures, and undo after acceptance.
 *
 * State and policy: a gesture is the span from pointer down to pointer up, or (keys, and
 * controls without a pointer gesture) a burst of changes less than GESTURE_MS apart. A
 * gesture is at most one undo entry. Its inverse is the value before the gesture, and it
 * is recorded only when the kernel accepts one of the gesture's values: a refused or lost
 * value records nothing, and later accepted values of the same gesture amend that entry.
 */
import type { Command, Reply } from "./types";
import type { Entry, History } from "./commands";
import { Coalescer } from "./model";

/** Changes of one control closer together than this are one gesture (a burst of key presses). */
export const GESTURE_MS = 1000;

interface Gesture {
  /** The command that restores the value from before the gesture (null: cannot be undone). */
  before: Command | null;
  entry: Entry | null;
}

export interface ParamStreamOptions {
  id: string;
  name: string;
  /** Sends one command and resolves with the kernel's reply (or the channel's failure). */
  send: (cmd: Command) => Promise<Reply>;
  history: History;
  /** The undo command for `cmd` if it were applied to the kernel's graph now. */
  inverseNow: (cmd: Command) => Command | null;
  now?: () => number;
  /** Every settled request: its reply decides the control's error. */
  onReply?: (reply: Reply) => void;
  /** The stream starts (true) or stops (false) waiting for the kernel. */
  onBusy?: (busy: boolean) => void;
  /** The undo history changed. */
  onRecord?: () => void;
}

export class ParamStream {
  private gesture: Gesture | null = null;
  private held = false;
  private last = -Infinity;
  private lastValue: unknown;
  private readonly coalescer: Coalescer<{ value: unknown; gesture: Gesture }>;
  private readonly now: () => number;

  constructor(private readonly o: ParamStreamOptions) {
    this.now = o.now ?? (() => performance.now());
    this.coalescer = new Coalescer(({ value, gesture }) => o.send(this.command(value)).then((r) => this.settle(r, value, gesture)));
  }

  /** Pointer down: the changes until `end` are one gesture. */
  begin(): void {
    this.held = true;
    this.gesture = null;
  }

  /** Pointer up (or an undo): the next change starts a new gesture. */
  end(): void {
    this.held = false;
    this.gesture = null;
  }

  change(value: unknown): void {
    const t = this.now();
    if (!this.gesture || (!this.held && t - this.last >= GESTURE_MS)) {
      // While an earlier value is still on its way, the kernel's graph does not show it yet.
      const before = this.coalescer.busy ? this.command(this.lastValue) : this.o.inverseNow(this.command(value));
      this.gesture = { before, entry: null };
    }
    this.last = t;
    this.lastValue = value;
    const wasBusy = this.coalescer.busy;
    this.coalescer.push({ value, gesture: this.gesture });
    if (!wasBusy) {
      this.o.onBusy?.(true);
      void this.coalescer.idle().then(() => this.o.onBusy?.(false));
    }
  }

  get busy(): boolean {
    return this.coalescer.busy;
  }

  /** Resolves when nothing is in flight (bounded: every request has a timeout). */
  idle(): Promise<void> {
    return this.coalescer.idle();
  }

  private command(value: unknown): Command {
    return { op: "set_param", id: this.o.id, name: this.o.name, value };
  }

  private settle(reply: Reply, value: unknown, g: Gesture): void {
    if (reply.ok && g.before) {
      const command = this.command(value);
      if (g.entry) g.entry.command = command;
      else {
        g.entry = { command, inverse: g.before, label: `set ${this.o.id}.${this.o.name}` };
        this.o.history.push(g.entry);
      }
      this.o.onRecord?.();
    }
    this.o.onReply?.(reply);
  }
}
