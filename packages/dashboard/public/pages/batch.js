import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { api, stream, TERMINAL } from "../api.js";

/** Batches started from this page (newest first), for the Jobs page. */
export const recentBatches = [];

/** A batch's progress: one bar per VM, moved by the batch's live events. */
export function BatchProgress({ batchId }) {
  const [items, setItems] = useState(new Map());
  const [state, setState] = useState("connecting");
  useEffect(() => {
    let close = () => undefined;
    let alive = true;
    api("GET", `/v1/batches/${encodeURIComponent(batchId)}`).then((b) => {
      if (!alive) return;
      const map = new Map(
        b.items.map((i) => [i.vm, { vm: i.vm, phase: i.phase, percent: TERMINAL.has(i.phase) ? 100 : 0 }]),
      );
      setItems(new Map(map));
      if ([...map.values()].every((i) => TERMINAL.has(i.phase) || i.phase === "refused")) return setState("ended");
      close = stream(
        `/v1/batches/${encodeURIComponent(batchId)}/events`,
        (e) => {
          map.set(e.vm, { vm: e.vm, phase: e.phase, percent: e.percent, error: e.error, receivedAt: e.receivedAt });
          setItems(new Map(map));
        },
        { until: () => [...map.values()].every((i) => TERMINAL.has(i.phase)), onState: setState },
      );
    });
    return () => {
      alive = false;
      close();
    };
  }, [batchId]);
  const list = [...items.values()];
  const done = list.filter((i) => TERMINAL.has(i.phase)).length;
  return html`<section class="batch" data-batch=${batchId} aria-label=${`Batch ${batchId}`}>
    <h3>Batch ${batchId} <span class="muted">${done}/${list.length} finished${state === "open" ? " · live" : ""}</span></h3>
    <ul class="bars">
      ${list.map(
        (i) => html`<li data-vm=${i.vm} data-phase=${i.phase}>
          <a href=${`#/vms/${encodeURIComponent(i.vm)}`} class="bar-label">${i.vm}</a>
          <div class="bar" role="progressbar" aria-label=${`${i.vm} progress`} aria-valuemin="0" aria-valuemax="100" aria-valuenow=${i.percent}
            aria-valuetext=${i.phase}>
            <div class=${`fill ${i.phase === "failed" ? "bad" : i.phase === "done" ? "good" : ""}`} style=${`width:${i.percent}%`}></div>
          </div>
          <span class="bar-value phase-text">${i.phase}</span>
          ${i.error && html`<span class="error">${i.error.code}: ${i.error.message}</span>`}
        </li>`,
      )}
    </ul>
  </section>`;
}
