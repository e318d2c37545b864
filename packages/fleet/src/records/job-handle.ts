import { isTerminal, type StreamedEvent, VirtfleetError } from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { EventLog } from "./event-log.js";

export interface WaitOptions {
  /** Called with every event, in order, including the terminal one. */
  onEvent?: (event: StreamedEvent) => void;
  /** Give up after this long (throws PHASE_TIMEOUT). Default: wait forever. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A job the fleet accepted: follow its events, wait for its end. */
export class JobHandle {
  readonly id: string;
  readonly #log: EventLog;
  readonly #connect: () => Redis;
  readonly #cancel: (id: string) => Promise<string>;

  constructor(id: string, log: EventLog, connect: () => Redis, cancel: (id: string) => Promise<string>) {
    this.id = id;
    this.#log = log;
    this.#connect = connect;
    this.#cancel = cancel;
  }

  /**
   * Every event of the job after `afterId` (all of them by default), as they arrive; ends after the
   * terminal event. Uses its own blocking connection. JOB_NOT_FOUND when there is no such job (its
   * record is looked at once, the first time nothing new arrives).
   */
  async *events(
    afterId = "0",
    options: { signal?: AbortSignal; deadline?: number } = {},
  ): AsyncGenerator<StreamedEvent> {
    const redis = this.#connect();
    let last = afterId;
    let known = false;
    try {
      for (;;) {
        if (options.signal?.aborted) return;
        if (options.deadline !== undefined && Date.now() > options.deadline) {
          throw new VirtfleetError("PHASE_TIMEOUT", `job ${this.id} did not end in time`);
        }
        const batch = await this.#log.read(this.id, last, 1000, redis);
        if (batch.length === 0 && !known) {
          if ((await this.#log.progress(this.id)).phase === undefined) {
            throw new VirtfleetError("JOB_NOT_FOUND", `no job "${this.id}"`, { field: "jobId" });
          }
          known = true;
        }
        for (const event of batch) {
          last = event.id;
          yield event;
          if (isTerminal(event.phase)) return;
        }
      }
    } finally {
      redis.disconnect();
    }
  }

  /** Waits for the job's terminal event and returns it (done, failed or cancelled). */
  async wait(options: WaitOptions = {}): Promise<StreamedEvent> {
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
    let lastEvent: StreamedEvent | undefined;
    for await (const event of this.events("0", {
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(deadline === undefined ? {} : { deadline }),
    })) {
      options.onEvent?.(event);
      lastEvent = event;
    }
    if (lastEvent === undefined || !isTerminal(lastEvent.phase)) {
      throw new VirtfleetError("CANCELLED", `stopped waiting for job ${this.id}`);
    }
    return lastEvent;
  }

  /** Asks for the job to be cancelled (see FleetClient.cancelJob). */
  cancel() {
    return this.#cancel(this.id);
  }

  /** The job's current state. */
  status() {
    return this.#log.getJob(this.id);
  }
}
