/**
 * Small observable values outside React, each read by only the components that show it.
 *
 * State and policy: a slider step changes a control's pending flag, the undo history and
 * the run bar several times while its run is on its way. Kept in React state of the whole
 * editor, each of those re-rendered the canvas (React Flow) too, and on a slow machine the
 * picture that followed waited behind those renders. A Store notifies its own subscribers
 * only, and only when the value changes (compared by identity: updates make new objects).
 */
import { useSyncExternalStore } from "react";

export class Store<T> {
  private listeners = new Set<() => void>();
  constructor(private value: T) {}

  readonly get = (): T => this.value;

  set(next: T): void {
    if (Object.is(next, this.value)) return;
    this.value = next;
    for (const listener of [...this.listeners]) listener();
  }

  update(change: (value: T) => T): void {
    this.set(change(this.value));
  }

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };
}

/** The store's value; the calling component re-renders when it changes. */
export function useStore<T>(store: Store<T>): T {
  return useSyncExternalStore(store.subscribe, store.get);
}
