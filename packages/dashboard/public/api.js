// The dashboard's calls: the API's own /v1 endpoints, authenticated by the session cookie.
// Changes carry X-Virtfleet-UI: 1 (the API's CSRF guard for cookie-authenticated requests).

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail ?? body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET") headers["x-virtfleet-ui"] = "1";
  const res = await fetch(path, {
    method,
    credentials: "same-origin",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = {};
  try {
    json = text === "" ? {} : JSON.parse(text);
  } catch {
    json = { message: text };
  }
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

/** True when an endpoint is not there (yet): the page says so instead of failing. */
export const missing = (error) => error instanceof ApiError && error.status === 404 && /no route/.test(error.message);

/**
 * Server-Sent Events of the API (`progress` events, JSON). `until(event)` true closes the stream (a job's
 * stream ends when the job does; EventSource would reconnect). `onState("open"|"closed"|"retrying")`.
 */
export function stream(path, onEvent, { until, onState } = {}) {
  const es = new EventSource(path, { withCredentials: true });
  es.addEventListener("open", () => onState?.("open"));
  es.addEventListener("progress", (e) => {
    const event = JSON.parse(e.data);
    event.receivedAt = Date.now();
    onEvent(event);
    if (until?.(event)) {
      es.close();
      onState?.("ended");
    }
  });
  es.addEventListener("error", () => onState?.(es.readyState === EventSource.CLOSED ? "closed" : "retrying"));
  return () => es.close();
}

export const TERMINAL = new Set(["done", "failed", "cancelled"]);

export function fmtMiB(mib) {
  return mib >= 1024 ? `${(mib / 1024).toFixed(mib % 1024 === 0 ? 0 : 1)} GiB` : `${mib} MiB`;
}

export function fmtAge(iso, now = Date.now()) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function fmtLeft(iso, now = Date.now()) {
  if (!iso) return "";
  const s = Math.round((Date.parse(iso) - now) / 1000);
  if (s <= 0) return "expired";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h ${m}m` : `${m}m ${String(sec).padStart(2, "0")}s`;
}

export const can = (me, scope) => me.scopes.includes(scope) || me.scopes.includes("admin");
