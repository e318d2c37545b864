import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { api, missing, stream } from "../api.js";
import { BatchProgress, recentBatches } from "./batch.js";

const FEED_MAX = 200;

function Feed() {
  const [events, setEvents] = useState([]);
  const [state, setState] = useState("connecting");
  useEffect(
    () =>
      stream("/v1/events", (e) => setEvents((l) => [e, ...l].slice(0, FEED_MAX)), {
        onState: setState,
      }),
    [],
  );
  return html`<section aria-labelledby="feed-h">
    <h2 id="feed-h">Live events <span class="muted">${state === "open" ? "· live" : state === "closed" ? "· not available on this server" : ""}</span></h2>
    <ol class="feed" aria-live="polite" aria-relevant="additions">
      ${events.map(
        (e) => html`<li data-vm=${e.vm} data-phase=${e.phase}>
          <span class="muted">${new Date(e.at).toLocaleTimeString()}</span>
          <a href=${`#/vms/${encodeURIComponent(e.vm)}`}>${e.vm}</a>
          <span>${e.kind}</span>
          <span class=${`state s-${e.phase}`}>${e.phase}</span>
          <span class="muted">${e.host ?? ""} ${e.message}</span>
        </li>`,
      )}
    </ol>
  </section>`;
}

function Failed() {
  const [jobs, setJobs] = useState(undefined);
  useEffect(() => {
    const load = () =>
      api("GET", "/v1/jobs?state=failed&limit=50")
        .then((r) => setJobs(r.jobs))
        .catch((e) => setJobs(missing(e) ? null : []));
    load();
    const t = setInterval(load, 5000);
    return () => clearInterval(t);
  }, []);
  return html`<section aria-labelledby="failed-h">
    <h2 id="failed-h">Failed jobs</h2>
    ${jobs === null && html`<p class="muted">The list of failed jobs is not available on this server.</p>`}
    ${jobs?.length === 0 && html`<p class="muted">None.</p>`}
    ${jobs?.map(
      (j) => html`<details class="failed" data-job=${j.jobId}>
        <summary><span class="pill bad">${j.code}</span> <a href=${`#/vms/${encodeURIComponent(j.vm)}`}>${j.vm}</a> ${j.kind} · ${j.message}
          <span class="muted"> ${new Date(j.at).toLocaleString()}</span></summary>
        ${j.command && html`<p><strong>Command</strong></p><pre>${Array.isArray(j.command) ? j.command.join(" ") : j.command}</pre>`}
        ${j.stderr && html`<p><strong>stderr</strong></p><pre class="stderr">${j.stderr}</pre>`}
      </details>`,
    )}
  </section>`;
}

export function JobsPage() {
  const [batchId, setBatchId] = useState("");
  const [shown, setShown] = useState([...recentBatches]);
  const add = (e) => {
    e.preventDefault();
    const id = batchId.trim();
    if (id && !shown.includes(id)) setShown([id, ...shown]);
    setBatchId("");
  };
  return html`<h1>Jobs</h1>
    <div class="two">
      <${Feed} />
      <div>
        <section aria-labelledby="batches-h">
          <h2 id="batches-h">Batches</h2>
          <form class="inline" onSubmit=${add}>
            <label for="batch-id">Batch id</label>
            <input id="batch-id" value=${batchId} onInput=${(e) => setBatchId(e.target.value)} placeholder="batch-…" pattern="batch-[0-9a-f-]{36}" />
            <button type="submit">Show</button>
          </form>
          ${shown.map((id) => html`<${BatchProgress} key=${id} batchId=${id} />`)}
        </section>
        <${Failed} />
      </div>
    </div>`;
}
