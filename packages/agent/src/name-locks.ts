/** One job at a time per VM name within this process: a create and a destroy of one VM never overlap. */
export class NameLocks {
  readonly #tails = new Map<string, Promise<void>>();

  /** Whether some job holds (or waits for) the name's lock now. */
  held(name: string): boolean {
    return this.#tails.has(name);
  }

  async acquire(name: string): Promise<() => void> {
    const previous = this.#tails.get(name) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.#tails.set(name, tail);
    await previous;
    return () => {
      release();
      if (this.#tails.get(name) === tail) this.#tails.delete(name);
    };
  }
}
