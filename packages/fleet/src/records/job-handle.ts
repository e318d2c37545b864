import { isTerminal, type StreamedEvent, VirtfleetError } from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { EventLog } from "./event-log.js";
import type { JobEventHub } from "./job-event-hub.js";

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
  readonly #hub: JobEventHub | undefined;

  /** With a `hub`, the job's events are read there (shared with the client's other followed jobs). */
  constructor(
    id: string,
    log: EventLog,
    connect: () => Redis,
    cancel: (id: string) => Promise<string>,
    hub?: JobEventHub,
  ) {
    this.id = id;
    this.#log = log;
    this.#connect = connect;
    this.#cancel = cancel;
    this.#hub = hub;
  }

  /**
   * Every event of the job after `afterId` (all of them by default), as they arrive; ends after the
   * terminal event. Read on the client's shared blocking read (JobEventHub), or without one on its
   * own blocking connection. JOB_NOT_FOUND when there is no such job (its record is looked at once,
   * the first time nothing new arrives).
   */
  async *events(
    afterId = "0",
    options: { signal?: AbortSignal; deadline?: number } = {},
  ): AsyncGenerator<StreamedEvent> {
    const hub = this.#hub;
    const redis = hub === undefined ? this.#connect() : undefined;
    const follower = hub?.follow(this.id, afterId);
    let last = afterId;
    let known = false;
    try {
      for (;;) {
        if (options.signal?.aborted) return;
        if (options.deadline !== undefined && Date.now() > options.deadline) {
          throw new VirtfleetError("PHASE_TIMEOUT", `job ${this.id} did not end in time`);
        }
        const batch =
          hub !== undefined && follower !== undefined
            ? await hub.next(follower, 1000)
            : await this.#log.read(this.id, last, 1000, redis);
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
      if (follower !== undefined) hub?.unfollow(follower);
      redis?.disconnect();
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
