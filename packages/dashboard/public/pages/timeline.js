import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { stream, TERMINAL } from "../api.js";

/** A job's events, live: replayed from the start, then as they happen, until the job ends. */
export function useJobEvents(jobId) {
  const [events, setEvents] = useState([]);
  const [state, setState] = useState("connecting");
  useEffect(() => {
    if (!jobId) return undefined;
    setEvents([]);
    return stream(`/v1/jobs/${encodeURIComponent(jobId)}/events`, (e) => setEvents((l) => [...l, e]), {
      until: (e) => TERMINAL.has(e.phase),
      onState: setState,
    });
  }, [jobId]);
  return [events, state];
}

function ms(a, b) {
  const d = Date.parse(b) - Date.parse(a);
  return d >= 1000 ? `${(d / 1000).toFixed(1)} s` : `${Math.max(0, d)} ms`;
}

/** Phases as a timeline: each with its time and how long until the next. */
export function Timeline({ events, label }) {
  if (events.length === 0) return html`<p class="muted">No events yet.</p>`;
  const start = Date.parse(events[0].at);
  const end = Date.parse(events.at(-1).at);
  const span = Math.max(1, end - start);
  return html`<ol class="timeline" aria-label=${label}>
    ${events.map((e, i) => {
      const next = events[i + 1];
      const width = next ? Math.max(1, ((Date.parse(next.at) - Date.parse(e.at)) / span) * 100) : 0;
      return html`<li class=${`phase p-${e.phase.replace(".", "-")}`} data-phase=${e.phase} data-received-at=${e.receivedAt}>
        <span class="phase-name">${e.phase}</span>
        <span class="phase-bar" aria-hidden="true"><span style=${`width:${width}%`}></span></span>
        <span class="phase-dur">${next ? ms(e.at, next.at) : ""}</span>
        <span class="phase-at muted">${new Date(e.at).toLocaleTimeString()}</span>
        ${e.error && html`<span class="error">${e.error.code}: ${e.error.message}</span>`}
      </li>`;
    })}
  </ol>`;
}
