import {
  BatchAccepted,
  type BatchRequest,
  BatchView,
  type ClaimRequest,
  ClaimResult,
  ConsoleView,
  type CreateVmRequest,
  type ExtendRequest,
  FailedJobsView,
  type FailedJobView,
  HostViewOut,
  type ImageImportInput,
  ImageRecord,
  ImageViewOut,
  isTerminal,
  JobAccepted,
  JobView,
  LabEvent,
  type LabUpRequest,
  LabView,
  LeaseView,
  type ListVmsQuery,
  type PoolCreateRequest,
  PoolDetail,
  PoolRemoved,
  type PoolUpdateRequest,
  PoolView,
  Problem,
  ProgressEvent,
  type StreamedEvent,
  type StreamedLabEvent,
  TemplatePutResult,
  TemplateRemoved,
  type TemplateSpecInput,
  TemplateView,
  TerminalPhase,
  VmJobsView,
  type VmJobView,
  VmView,
} from "@virtfleet/core";
import { type EventSourceMessage, EventSourceParserStream } from "eventsource-parser/stream";
import { z } from "zod";
import { ApiError } from "./errors.js";

/** How to reach a virtfleet API server. */
export interface VirtfleetApiOptions {
  /** The server's base URL, e.g. `https://virtfleet.example:8443` (a path prefix is kept). */
  baseUrl: string;
  /** The bearer token sent with every request. */
  token: string;
  /** The fetch implementation to use. Default: the global `fetch`. */
  fetch?: typeof fetch;
  /**
   * Event streams: the first delay before reconnecting, in ms; it doubles with each consecutive
   * failure (up to 10 s, or this value if larger). A `retry:` field sent by the server replaces it.
   * Default 500.
   */
  reconnectDelayMs?: number;
  /**
   * Event streams: how many consecutive reconnects without a new event are tried before giving up.
   * Default 20.
   */
  maxReconnects?: number;
}

/** The body of `POST /v1/vms`, as a caller writes it (defaults may be left out). */
export type CreateVmInput = z.input<typeof CreateVmRequest>;
/** The body of `POST /v1/batches`, as a caller writes it (defaults may be left out). */
export type BatchInput = z.input<typeof BatchRequest>;
/** The filters of `GET /v1/vms`. `label` is `key=value`. */
export type ListVmsParams = z.input<typeof ListVmsQuery>;
/** A host, as `GET /v1/hosts` lists it. */
export type HostInfo = z.infer<typeof HostViewOut>;

/** The answer of `POST /v1/jobs/{id}/cancel`. */
export const CancelResult = z.object({ jobId: z.string(), outcome: z.string() });
/** The answer of `POST /v1/jobs/{id}/cancel`. */
export type CancelResult = z.infer<typeof CancelResult>;

/** Options every call accepts. */
export interface CallOptions {
  /** Aborts the request. */
  signal?: AbortSignal;
}

/** Options of the calls that change something. */
export interface MutationOptions extends CallOptions {
  /** Sent as `Idempotency-Key`: a retried request with the same key is not applied twice. */
  idempotencyKey?: string;
}

/** Options of the event streams. */
export interface EventStreamOptions {
  /** Resume after this event id (sent as `Last-Event-ID`); that event is not yielded again. */
  lastEventId?: string;
  /** Ends the stream: the generator throws the signal's reason. */
  signal?: AbortSignal;
}

/** Options of {@link VirtfleetApi.waitJob}. */
export interface WaitJobOptions extends EventStreamOptions {
  /** Called with each event, the terminal one included, before the next one is read. */
  onEvent?: (event: StreamedEvent) => void | Promise<void>;
}

type StreamMode = "job" | "batch" | "fleet";

const RETRYABLE_STATUS: ReadonlySet<number> = new Set([408, 425, 429, 500, 502, 503, 504]);
const MAX_BACKOFF_MS = 10_000;

/**
 * A typed client of the virtfleet HTTP API.
 *
 * Every answer is checked against its schema from `@virtfleet/core`. Error answers (and answers
 * that cannot be understood) are thrown as {@link ApiError}; network failures of plain calls are
 * thrown as they come from `fetch`. Event streams reconnect by themselves.
 */
export class VirtfleetApi {
  readonly #baseUrl: string;
  readonly #token: string;
  readonly #fetch: typeof fetch;
  readonly #reconnectDelayMs: number;
  readonly #maxReconnects: number;

  /** @param options where the server is, and how to talk to it. */
  constructor(options: VirtfleetApiOptions) {
    this.#baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.#token = options.token;
    const impl = options.fetch ?? globalThis.fetch;
    // Called unbound, so that a browser's window.fetch does not see the client as `this`.
    this.#fetch = (input, init) => impl(input, init);
    this.#reconnectDelayMs = options.reconnectDelayMs ?? 500;
    this.#maxReconnects = options.maxReconnects ?? 20;
  }

  /** `POST /v1/vms`: asks for a VM; the answer names the job that creates it. */
  createVm(body: CreateVmInput, options: MutationOptions = {}): Promise<JobAccepted> {
    return this.#call("POST", "/v1/vms", JobAccepted, { ...options, body });
  }

  /** `POST /v1/batches`: asks for several VMs; each item is a job, or the error that refused it. */
  createBatch(body: BatchInput, options: MutationOptions = {}): Promise<BatchAccepted> {
    return this.#call("POST", "/v1/batches", BatchAccepted, { ...options, body });
  }

  /** `GET /v1/vms`: the VMs, optionally filtered by host, state and one `key=value` label. */
  listVms(query: ListVmsParams = {}, options: CallOptions = {}): Promise<VmView[]> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined) params.set(key, String(value));
    }
    const qs = params.toString();
    return this.#call("GET", qs === "" ? "/v1/vms" : `/v1/vms?${qs}`, z.array(VmView), options);
  }

  /** `GET /v1/vms/{name}`: one VM (`VM_NOT_FOUND` when there is none). */
  getVm(name: string, options: CallOptions = {}): Promise<VmView> {
    return this.#call("GET", `/v1/vms/${segment(name)}`, VmView, options);
  }

  /** `DELETE /v1/vms/{name}`: destroys a VM; the answer names the job that does it. */
  destroyVm(name: string, options: MutationOptions = {}): Promise<JobAccepted> {
    return this.#call("DELETE", `/v1/vms/${segment(name)}`, JobAccepted, options);
  }

  /** `GET /v1/jobs/{id}`: a job's current state. */
  getJob(id: string, options: CallOptions = {}): Promise<JobView> {
    return this.#call("GET", `/v1/jobs/${segment(id)}`, JobView, options);
  }

  /** `POST /v1/jobs/{id}/cancel`: asks a job to stop; `outcome` says what happened. */
  cancelJob(id: string, options: MutationOptions = {}): Promise<CancelResult> {
    return this.#call("POST", `/v1/jobs/${segment(id)}/cancel`, CancelResult, options);
  }

  /** `GET /v1/batches/{id}`: a batch's jobs and their phases. */
  getBatch(id: string, options: CallOptions = {}): Promise<BatchView> {
    return this.#call("GET", `/v1/batches/${segment(id)}`, BatchView, options);
  }

  /** `GET /v1/hosts`: the hosts of the fleet, with their capacity and allocation. */
  listHosts(options: CallOptions = {}): Promise<HostInfo[]> {
    return this.#call("GET", "/v1/hosts", z.array(HostViewOut), options);
  }

  /** `POST /v1/hosts/{id}/drain` (admin): nothing new is placed on the host; answers the host as `listHosts` does. */
  drainHost(id: string, options: MutationOptions = {}): Promise<HostInfo> {
    return this.#call("POST", `/v1/hosts/${segment(id)}/drain`, HostViewOut, options);
  }

  /** `POST /v1/hosts/{id}/undrain` (admin): VMs are placed on the host again. */
  undrainHost(id: string, options: MutationOptions = {}): Promise<HostInfo> {
    return this.#call("POST", `/v1/hosts/${segment(id)}/undrain`, HostViewOut, options);
  }

  /**
   * `GET /v1/jobs?state=failed`: recent failed jobs the token may see, newest first (`limit`: default
   * 50, at most 500), with their code, message, and a failed command's argv and stderr.
   */
  async failedJobs(query: { limit?: number } = {}, options: CallOptions = {}): Promise<FailedJobView[]> {
    const qs = query.limit === undefined ? "" : `&limit=${query.limit}`;
    return (await this.#call("GET", `/v1/jobs?state=failed${qs}`, FailedJobsView, options)).jobs;
  }

  /**
   * `GET /v1/jobs?vm=NAME`: the jobs of one VM the token may see (create, destroy…), newest first
   * (`limit`: default 50, at most 500), each with its kind, latest phase, and code when it failed.
   */
  async vmJobs(name: string, query: { limit?: number } = {}, options: CallOptions = {}): Promise<VmJobView[]> {
    const qs = query.limit === undefined ? "" : `&limit=${query.limit}`;
    return (await this.#call("GET", `/v1/jobs?vm=${encodeURIComponent(name)}${qs}`, VmJobsView, options)).jobs;
  }

  /**
   * `GET /v1/vms/{name}/console`: the last `lines` (default 50, at most 500) lines of a running VM's
   * serial console (`VM_NOT_RUNNING`, 409, when it is not running; `HOST_TIMEOUT`, 504, when its
   * host does not answer).
   */
  vmConsole(name: string, query: { lines?: number } = {}, options: CallOptions = {}): Promise<ConsoleView> {
    const qs = query.lines === undefined ? "" : `?lines=${query.lines}`;
    return this.#call("GET", `/v1/vms/${segment(name)}/console${qs}`, ConsoleView, options);
  }

  /** `GET /v1/images`: the image catalogue (the hosts holding each only for a token with hosts:read). */
  listImages(options: CallOptions = {}): Promise<ImageViewOut[]> {
    return this.#call("GET", "/v1/images", z.array(ImageViewOut), options);
  }

  /** `POST /v1/images` (admin): catalogues an image, a URL workers pull or a file on one host. */
  importImage(body: z.input<typeof ImageImportInput>, options: MutationOptions = {}): Promise<ImageRecord> {
    return this.#call("POST", "/v1/images", ImageRecord, { ...options, body });
  }

  /** `GET /v1/leases/{id}`: a lease (of a claimed VM or a lab) and when it ends (`NOT_FOUND`: none, or another tenant's). */
  getLease(id: string, options: CallOptions = {}): Promise<LeaseView> {
    return this.#call("GET", `/v1/leases/${segment(id)}`, LeaseView, options);
  }

  /** `POST /v1/leases/{id}/extend`: the lease then ends `by` (`1h`, `30m`, or a number of seconds) from now, never past its maximum. */
  extendLease(id: string, by: z.input<typeof ExtendRequest>["by"], options: MutationOptions = {}): Promise<LeaseView> {
    return this.#call("POST", `/v1/leases/${segment(id)}/extend`, LeaseView, { ...options, body: { by } });
  }

  /** `DELETE /v1/leases/{id}`: releases a lease now; what it holds is removed (a claimed VM destroyed, a lab taken down). */
  releaseLease(id: string, options: MutationOptions = {}): Promise<LeaseView> {
    return this.#call("DELETE", `/v1/leases/${segment(id)}`, LeaseView, options);
  }

  /** `DELETE /v1/images/{name}` (admin): takes an image out of the catalogue. */
  removeImage(name: string, options: MutationOptions = {}): Promise<{ name: string; removed: true }> {
    return this.#call(
      "DELETE",
      `/v1/images/${segment(name)}`,
      z.object({ name: z.string(), removed: z.literal(true) }),
      options,
    );
  }

  /** `POST /v1/labs`: makes a lab from templates (202: the lab, `creating`). */
  upLab(body: LabUpRequest, options: MutationOptions = {}): Promise<LabView> {
    return this.#call("POST", "/v1/labs", LabView, { ...options, body });
  }

  /** `GET /v1/labs`: every lab the token's tenant sees. */
  listLabs(options: CallOptions = {}): Promise<LabView[]> {
    return this.#call("GET", "/v1/labs", z.array(LabView), options);
  }

  /** `GET /v1/labs/{name}`: a lab and its VMs (`NOT_FOUND` when there is none). */
  getLab(name: string, options: CallOptions = {}): Promise<LabView> {
    return this.#call("GET", `/v1/labs/${segment(name)}`, LabView, options);
  }

  /** `POST /v1/labs/{name}/extend`: the lab's lease then ends `by` (e.g. `1h`) from now. */
  extendLab(name: string, by: string, options: MutationOptions = {}): Promise<LabView> {
    return this.#call("POST", `/v1/labs/${segment(name)}/extend`, LabView, { ...options, body: { by } });
  }

  /** `DELETE /v1/labs/{name}`: takes the lab down (202: the lab, `expiring` or `gone`). */
  downLab(name: string, options: MutationOptions = {}): Promise<LabView> {
    return this.#call("DELETE", `/v1/labs/${segment(name)}`, LabView, options);
  }

  /**
   * `GET /v1/labs/{name}/events`: the lab's events (state changes, each VM's job ending), each once;
   * ends after the lab is gone (or failed and rolled back). Reconnects with `Last-Event-ID` when the
   * connection drops; errors as for {@link VirtfleetApi.jobEvents}.
   */
  async *labEvents(name: string, options: EventStreamOptions = {}): AsyncGenerator<StreamedLabEvent, void, undefined> {
    const path = `/v1/labs/${segment(name)}/events`;
    let lastEventId = options.lastEventId;
    let failures = 0;
    for (;;) {
      options.signal?.throwIfAborted();
      const headers: Record<string, string> = { authorization: `Bearer ${this.#token}`, accept: "text/event-stream" };
      if (lastEventId !== undefined) headers["last-event-id"] = lastEventId;
      let progressed = false;
      try {
        const response = await this.#fetch(this.#url(path), {
          headers,
          ...(options.signal === undefined ? {} : { signal: options.signal }),
        });
        if (!response.ok) throw await errorFrom(response);
        if (response.body === null) throw new Error(`${path}: the answer has no body`);
        const messages = response.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
        for await (const message of messages) {
          if (message.event !== "lab" || message.id === undefined) continue;
          const parsed = LabEvent.safeParse(JSON.parse(message.data));
          if (!parsed.success) throw malformed(200, `${path}: event ${message.id}: ${z.prettifyError(parsed.error)}`);
          lastEventId = message.id;
          progressed = true;
          yield { ...parsed.data, id: message.id };
          const e = parsed.data;
          if (e.type === "state" && (e.state === "gone" || (e.state === "failed" && e.rolledBack === true))) return;
        }
        // A clean end without the last event: the lab is no longer there.
        return;
      } catch (error) {
        if (options.signal?.aborted) throw options.signal.reason;
        if (error instanceof ApiError) throw error;
        failures = progressed ? 1 : failures + 1;
        if (failures > this.#maxReconnects) throw error;
        await sleep(Math.min(this.#reconnectDelayMs * 2 ** (failures - 1), MAX_BACKOFF_MS), options.signal);
      }
    }
  }

  /**
   * Stores template `name` (`PUT /v1/templates/{name}`): a VM spec without `name`, plus an optional
   * `guestReady`. A changed spec makes a new version (`changed: true`); the same spec keeps it.
   */
  putTemplate(name: string, spec: TemplateSpecInput, options: MutationOptions = {}): Promise<TemplatePutResult> {
    return this.#call("PUT", `/v1/templates/${segment(name)}`, TemplatePutResult, { ...options, body: spec });
  }

  /** The templates the token sees (its tenant's and the shared ones), by name. */
  listTemplates(options: CallOptions = {}): Promise<TemplateView[]> {
    return this.#call("GET", "/v1/templates", z.array(TemplateView), options);
  }

  /** One template (NOT_FOUND: none, or another tenant's). */
  getTemplate(name: string, options: CallOptions = {}): Promise<TemplateView> {
    return this.#call("GET", `/v1/templates/${segment(name)}`, TemplateView, options);
  }

  /** Removes a template (NAME_CLASH while a pool makes VMs from it). */
  removeTemplate(name: string, options: MutationOptions = {}): Promise<TemplateRemoved> {
    return this.#call("DELETE", `/v1/templates/${segment(name)}`, TemplateRemoved, options);
  }

  /** `POST /v1/pools`: makes a warm pool (NOT_FOUND, field `template`: no such template). */
  createPool(body: PoolCreateRequest, options: MutationOptions = {}): Promise<PoolView> {
    return this.#call("POST", "/v1/pools", PoolView, { ...options, body });
  }

  /** `GET /v1/pools`: every pool the token sees, with its counts. */
  listPools(options: CallOptions = {}): Promise<PoolView[]> {
    return this.#call("GET", "/v1/pools", z.array(PoolView), options);
  }

  /** `GET /v1/pools/{name}`: a pool and its VMs. */
  getPool(name: string, options: CallOptions = {}): Promise<PoolDetail> {
    return this.#call("GET", `/v1/pools/${segment(name)}`, PoolDetail, options);
  }

  /** `PATCH /v1/pools/{name}`: changes a pool's settings. */
  updatePool(name: string, body: PoolUpdateRequest, options: MutationOptions = {}): Promise<PoolView> {
    return this.#call("PATCH", `/v1/pools/${segment(name)}`, PoolView, { ...options, body });
  }

  /** `DELETE /v1/pools/{name}`: removes a pool and destroys its VMs (`wait`: answers once they are gone). */
  removePool(name: string, query: { wait?: boolean } = {}, options: MutationOptions = {}): Promise<PoolRemoved> {
    const qs = query.wait === true ? "?wait=true" : "";
    return this.#call("DELETE", `/v1/pools/${segment(name)}${qs}`, PoolRemoved, options);
  }

  /** `POST /v1/pools/{name}/claims`: hands over a ready VM (POOL_EMPTY, 503, when none is ready within `wait`). */
  claim(name: string, body: ClaimRequest = {}, options: MutationOptions = {}): Promise<ClaimResult> {
    return this.#call("POST", `/v1/pools/${segment(name)}/claims`, ClaimResult, { ...options, body });
  }

  /** `DELETE /v1/pools/{name}/claims/{vm}`: releases a claimed VM (it is destroyed, the pool refills). */
  releaseClaim(pool: string, vm: string, options: MutationOptions = {}): Promise<{ vm: string; pool: string }> {
    return this.#call(
      "DELETE",
      `/v1/pools/${segment(pool)}/claims/${segment(vm)}`,
      z.object({ vm: z.string(), pool: z.string() }),
      options,
    );
  }

  /**
   * `GET /v1/jobs/{id}/events`: the job's progress events, each once, ending after the terminal one
   * (phase `done`, `failed` or `cancelled`).
   *
   * Reconnects by itself when the connection fails or ends early, resuming with `Last-Event-ID`.
   * When the server ends the stream cleanly and the job is already over (its terminal event was at
   * or before `lastEventId`), the generator ends without yielding it again.
   *
   * Throws an {@link ApiError} on an error answer that a retry cannot fix (e.g. `JOB_NOT_FOUND`) or a
   * malformed event; an `Error` after `maxReconnects` consecutive fruitless reconnects.
   */
  jobEvents(id: string, options: EventStreamOptions = {}): AsyncGenerator<StreamedEvent, void, undefined> {
    return this.#events(`/v1/jobs/${segment(id)}/events`, "job", id, options);
  }

  /**
   * `GET /v1/batches/{id}/events`: the progress events of every job of a batch, each once. Ends when
   * the server ends the stream cleanly (every job has ended); reconnects, resuming with
   * `Last-Event-ID`, when the connection fails. Errors as for {@link VirtfleetApi.jobEvents}.
   */
  batchEvents(id: string, options: EventStreamOptions = {}): AsyncGenerator<StreamedEvent, void, undefined> {
    return this.#events(`/v1/batches/${segment(id)}/events`, "batch", id, options);
  }

  /**
   * `GET /v1/events`: every job event the token may see (its tenant's; an admin's: all), from now on;
   * never ends by itself (abort `signal` to stop). Reconnects with `Last-Event-ID` when the connection
   * fails or ends. Errors as for {@link VirtfleetApi.jobEvents}.
   */
  fleetEvents(options: EventStreamOptions = {}): AsyncGenerator<StreamedEvent, void, undefined> {
    return this.#events("/v1/events", "fleet", "", options);
  }

  /**
   * Follows a job to its end and returns its terminal event (check `phase` and `error`: a failed job
   * is not thrown).
   */
  async waitJob(id: string, options: WaitJobOptions = {}): Promise<StreamedEvent> {
    const { onEvent, ...streamOptions } = options;
    for await (const event of this.jobEvents(id, streamOptions)) {
      await onEvent?.(event);
      if (isTerminal(event.phase)) return event;
    }
    throw new Error(`job ${id} is over, but its terminal event was not in the stream (resumed after it?)`);
  }

  #url(path: string): string {
    return `${this.#baseUrl}${path}`;
  }

  async #call<S extends z.ZodType>(
    method: string,
    path: string,
    schema: S,
    options: MutationOptions & { body?: unknown },
  ): Promise<z.infer<S>> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.#token}`,
      accept: "application/json, application/problem+json",
    };
    let payload: string | undefined;
    if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      payload = JSON.stringify(options.body);
    }
    if (options.idempotencyKey !== undefined) headers["idempotency-key"] = options.idempotencyKey;
    const response = await this.#fetch(this.#url(path), {
      method,
      headers,
      body: payload,
      signal: options.signal,
    });
    if (!response.ok) throw await errorFrom(response);
    const text = await response.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw malformed(response.status, `${method} ${path}: the answer is not JSON`, error);
    }
    const result = schema.safeParse(json);
    if (!result.success) {
      throw malformed(
        response.status,
        `${method} ${path}: unexpected answer: ${z.prettifyError(result.error)}`,
        result.error,
      );
    }
    return result.data;
  }

  async *#events(
    path: string,
    mode: StreamMode,
    id: string,
    options: EventStreamOptions,
  ): AsyncGenerator<StreamedEvent, void, undefined> {
    const { signal } = options;
    let lastEventId = options.lastEventId;
    const seen = new Set<string>();
    if (lastEventId !== undefined) seen.add(lastEventId);
    let retryMs = this.#reconnectDelayMs;
    let failures = 0;

    for (;;) {
      signal?.throwIfAborted();
      const connection = new AbortController();
      const onAbort = (): void => connection.abort(signal?.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      let progressed = false;
      let failure: unknown;
      try {
        const headers: Record<string, string> = {
          authorization: `Bearer ${this.#token}`,
          accept: "text/event-stream",
          "cache-control": "no-cache",
        };
        if (lastEventId !== undefined) headers["last-event-id"] = lastEventId;
        const response = await this.#fetch(this.#url(path), { headers, signal: connection.signal });
        if (!response.ok) {
          const error = await errorFrom(response);
          if (!RETRYABLE_STATUS.has(response.status)) throw error;
          failure = error;
        } else if (response.body === null) {
          failure = new Error(`${path}: the answer has no body`);
        } else {
          const messages = response.body.pipeThrough(new TextDecoderStream()).pipeThrough(
            new EventSourceParserStream({
              onRetry: (ms) => {
                retryMs = ms;
              },
            }),
          );
          for await (const message of messages) {
            const event = toEvent(message, path);
            if (event === undefined || seen.has(event.id)) continue;
            seen.add(event.id);
            lastEventId = event.id;
            progressed = true;
            yield event;
            if (mode === "job" && isTerminal(event.phase)) return;
          }
          // A clean end of the body.
          if (mode === "batch") return;
          if (mode === "fleet") failure = new Error(`${path}: the stream ended`);
          else if (await this.#jobIsOver(id, signal)) return;
          else failure = new Error(`${path}: the stream ended before the job's terminal event`);
        }
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        // Error answers a retry cannot fix, and malformed events, end the stream.
        if (error instanceof ApiError) throw error;
        failure = error;
      } finally {
        signal?.removeEventListener("abort", onAbort);
        connection.abort();
      }

      failures = progressed ? 1 : failures + 1;
      if (failures > this.#maxReconnects) {
        throw new Error(`${path}: gave up after ${this.#maxReconnects} reconnects without a new event`, {
          cause: failure,
        });
      }
      await sleep(Math.min(retryMs * 2 ** (failures - 1), Math.max(retryMs, MAX_BACKOFF_MS)), signal);
    }
  }

  /** After a clean end without the terminal event: is the job over anyway? A failed check means no. */
  async #jobIsOver(id: string, signal: AbortSignal | undefined): Promise<boolean> {
    try {
      const job = await this.getJob(id, signal === undefined ? {} : { signal });
      return TerminalPhase.safeParse(job.phase).success;
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (error instanceof ApiError && !RETRYABLE_STATUS.has(error.status)) throw error;
      return false;
    }
  }
}

/** One SSE message as an event; undefined for messages that are not progress events. */
function toEvent(message: EventSourceMessage, path: string): StreamedEvent | undefined {
  if (message.event !== undefined && message.event !== "progress") return undefined;
  if (message.id === undefined || message.id === "") {
    throw malformed(200, `${path}: a progress event without an id`);
  }
  let json: unknown;
  try {
    json = JSON.parse(message.data);
  } catch (error) {
    throw malformed(200, `${path}: event ${message.id} is not JSON`, error);
  }
  const result = ProgressEvent.safeParse(json);
  if (!result.success) {
    throw malformed(200, `${path}: event ${message.id}: ${z.prettifyError(result.error)}`, result.error);
  }
  return { ...result.data, id: message.id };
}

/** The ApiError of an error answer: its problem details, or INTERNAL when it has none. */
async function errorFrom(response: Response): Promise<ApiError> {
  let text = "";
  try {
    text = await response.text();
  } catch {
    // The body could not be read: the status alone will do.
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const problem = Problem.safeParse(json);
  if (problem.success) return new ApiError(problem.data);
  const title = response.statusText === "" ? `HTTP ${response.status}` : response.statusText;
  return new ApiError({
    type: "about:blank",
    title,
    status: response.status,
    code: "INTERNAL",
    detail: text === "" ? `${title} without problem details` : text.slice(0, 1000),
  });
}

/** An answer that does not match its schema. */
function malformed(status: number, detail: string, cause?: unknown): ApiError {
  return new ApiError({ type: "about:blank", title: "Malformed answer", status, code: "INTERNAL", detail }, { cause });
}

/** A path segment, escaped. */
function segment(value: string): string {
  return encodeURIComponent(value);
}

/** Waits `ms`, or rejects with the signal's reason when it aborts first. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
