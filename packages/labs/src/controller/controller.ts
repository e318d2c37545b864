import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { ControllerLoop } from "../deps.js";
import type { LabKeys } from "../keys.js";
import { LuaScript } from "../lua.js";

const lockScript = new LuaScript("controller-lock", 1);
const unlockScript = new LuaScript("controller-unlock", 1);

/** How long the controller's lock lives unless renewed (ms): a dead controller is replaced within it. */
export const DEFAULT_CONTROLLER_LOCK_MS = 15_000;

export interface ControllerOptions {
  redis: Redis;
  keys: LabKeys;
  logger: Logger;
  loops: readonly ControllerLoop[];
  /** Default DEFAULT_CONTROLLER_LOCK_MS; renewed every third of it. */
  lockMs?: number;
}

interface LoopState {
  loop: ControllerLoop;
  timer: NodeJS.Timeout | undefined;
  running: Promise<void> | undefined;
  /** Woken while a tick ran: run again as soon as it ends. */
  again: boolean;
}

/**
 * The fleet's one controller: whichever instance holds `<prefix>:controller` (SET NX PX, renewed)
 * runs every loop's tick every `intervalMs` (never two ticks of one loop at once; a tick that throws
 * is logged and the loop goes on). Another instance waits and takes over when the lock expires.
 */
export class Controller {
  readonly #o: ControllerOptions;
  readonly #lockMs: number;
  readonly #token = `${process.pid}-${randomBytes(6).toString("hex")}`;
  readonly #loops = new Map<string, LoopState>();
  #leader = false;
  #lockTimer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  #started = false;

  constructor(options: ControllerOptions) {
    this.#o = options;
    this.#lockMs = options.lockMs ?? DEFAULT_CONTROLLER_LOCK_MS;
    for (const loop of options.loops) {
      if (this.#loops.has(loop.name)) throw new Error(`two controller loops are named "${loop.name}"`);
      this.#loops.set(loop.name, { loop, timer: undefined, running: undefined, again: false });
    }
  }

  /** True while this instance holds the lock and runs the loops. */
  get leader(): boolean {
    return this.#leader;
  }

  /** Starts competing for the lock (at once, then every third of its life). */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    await this.#elect();
    const timer = setInterval(() => void this.#elect(), Math.max(100, Math.floor(this.#lockMs / 3)));
    timer.unref();
    this.#lockTimer = timer;
  }

  /** Runs the named loop's tick soon (e.g. a pool's refill when a claim happened); only on the leader. */
  wake(name: string): void {
    const s = this.#loops.get(name);
    if (s === undefined || !this.#leader || this.#closing !== undefined) return;
    if (s.running !== undefined) {
      s.again = true;
      return;
    }
    setImmediate(() => this.#run(s));
  }

  async #elect(): Promise<void> {
    if (this.#closing !== undefined) return;
    let held: boolean;
    try {
      held =
        Number(await lockScript.run(this.#o.redis, [this.#o.keys.controllerLock()], [this.#token, this.#lockMs])) === 1;
    } catch (error) {
      this.#o.logger.warn({ err: error }, "controller: could not renew the lock");
      held = false;
    }
    if (this.#closing !== undefined) return;
    if (held && !this.#leader) {
      this.#leader = true;
      this.#o.logger.info({ loops: [...this.#loops.keys()] }, "controller: elected; running the loops");
      for (const s of this.#loops.values()) this.#schedule(s, 0);
    } else if (!held && this.#leader) {
      this.#leader = false;
      this.#o.logger.warn("controller: lost the lock; another instance runs the loops");
      this.#stopTimers();
    }
  }

  #schedule(s: LoopState, delayMs: number): void {
    if (s.timer !== undefined) clearTimeout(s.timer);
    s.timer = setTimeout(() => {
      s.timer = undefined;
      void this.#run(s);
    }, delayMs);
    s.timer.unref();
  }

  async #run(s: LoopState): Promise<void> {
    if (!this.#leader || this.#closing !== undefined || s.running !== undefined) return;
    if (s.timer !== undefined) {
      clearTimeout(s.timer);
      s.timer = undefined;
    }
    s.running = (async () => {
      try {
        await s.loop.tick();
      } catch (error) {
        this.#o.logger.error({ err: error, loop: s.loop.name }, "controller: tick failed; retried next time");
      }
    })();
    await s.running;
    s.running = undefined;
    if (!this.#leader || this.#closing !== undefined) return;
    if (s.again) {
      s.again = false;
      this.#schedule(s, 0);
    } else this.#schedule(s, s.loop.intervalMs);
  }

  #stopTimers(): void {
    for (const s of this.#loops.values()) {
      if (s.timer !== undefined) clearTimeout(s.timer);
      s.timer = undefined;
      s.again = false;
    }
  }

  /**
   * Stops: no more ticks, waits for running ones, closes the loops, gives the lock up (only if this
   * instance holds it). Safe to call twice.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#lockTimer !== undefined) clearInterval(this.#lockTimer);
      this.#stopTimers();
      await Promise.all([...this.#loops.values()].map((s) => s.running));
      for (const s of this.#loops.values()) {
        await s.loop.close?.().catch((error: unknown) => {
          this.#o.logger.warn({ err: error, loop: s.loop.name }, "controller: a loop did not close cleanly");
        });
      }
      if (this.#leader) {
        this.#leader = false;
        await unlockScript.run(this.#o.redis, [this.#o.keys.controllerLock()], [this.#token]).catch(() => undefined);
      }
    })();
    return this.#closing;
  }
}
