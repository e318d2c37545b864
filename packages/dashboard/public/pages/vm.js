import { html } from "htm/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { api, can, fmtAge, fmtMiB, missing } from "../api.js";
import { Timeline, useJobEvents } from "./timeline.js";

function JobSection({ jobId, open }) {
  const [job, setJob] = useState(undefined);
  const [events, state] = useJobEvents(jobId);
  useEffect(() => {
    api("GET", `/v1/jobs/${encodeURIComponent(jobId)}`)
      .then(setJob)
      .catch(() => setJob(null));
  }, [jobId, events.length]);
  const last = events.at(-1);
  return html`<details class="job" open=${open} data-job=${jobId}>
    <summary><strong>${job?.kind ?? last?.kind ?? "job"}</strong> ${jobId}
      <span class="muted"> · ${last?.phase ?? job?.phase ?? ""} ${state === "open" ? "(live)" : ""}</span></summary>
    <${Timeline} events=${events} label=${`Phases of job ${jobId}`} />
    ${job?.error && html`<pre class="stderr">${job.error.code}: ${job.error.message}${job.error.stderr ? `\n${job.error.stderr}` : ""}</pre>`}
  </details>`;
}

function Console({ name }) {
  const [consoleLines, setLines] = useState(undefined);
  useEffect(() => {
    let alive = true;
    const load = () =>
      api("GET", `/v1/vms/${encodeURIComponent(name)}/console?lines=40`)
        .then((c) => alive && setLines(c.lines))
        .catch((e) => alive && setLines(missing(e) ? null : [`(${e.message})`]));
    load();
    const t = setInterval(load, 5000);
    return () => {
      alive = false;
      clearInterval(t);
    };
  }, [name]);
  const pre = useRef(null);
  // The last lines are what matters: keep the console scrolled to its end as it grows.
  useEffect(() => {
    if (pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [consoleLines]);
  if (consoleLines === null) return html`<p class="muted">The serial console is not available on this server.</p>`;
  if (consoleLines === undefined) return html`<p class="muted">Loading…</p>`;
  return html`<pre class="console" ref=${pre} tabindex="0" aria-label="Serial console, last lines">${consoleLines.join("\n")}</pre>`;
}

/** Job ids in the order they ran: `older` (known from the history) first, then those only `known` had. */
function merge(older, known) {
  const out = [...older];
  for (const id of known) if (!out.includes(id)) out.push(id);
  return out.length === known.length && out.every((id, i) => id === known[i]) ? known : out;
}

export function VmPage({ me, name }) {
  const [vm, setVm] = useState(undefined);
  const [jobs, setJobs] = useState([]);
  const [error, setError] = useState("");
  const [confirming, setConfirming] = useState(false);
  useEffect(() => {
    let alive = true;
    // The VM's job history (newest first from the API), oldest shown first; ids already shown stay.
    const history = () =>
      api("GET", `/v1/jobs?vm=${encodeURIComponent(name)}&limit=20`)
        .then((r) => alive && setJobs((j) => merge(r.jobs.map((x) => x.jobId).reverse(), j)))
        .catch(() => undefined);
    const load = () =>
      api("GET", `/v1/vms/${encodeURIComponent(name)}`)
        .then((v) => {
          if (!alive) return;
          setVm(v);
          setJobs((j) => (v.jobId && !j.includes(v.jobId) ? [...j, v.jobId] : j));
          if (v.jobId) return history();
        })
        .catch((e) => {
          if (!alive) return;
          if (e.status === 404) {
            setVm(null);
            return history();
          }
          setError(e.message);
        });
    load();
    const t = setInterval(load, 3000);
    return () => {
      alive = false;
      clearInterval(t);
    };
  }, [name]);
  const destroy = async () => {
    setConfirming(false);
    try {
      const r = await api("DELETE", `/v1/vms/${encodeURIComponent(name)}`);
      setJobs((j) => (j.includes(r.jobId) ? j : [...j, r.jobId]));
    } catch (e) {
      setError(e.message);
    }
  };
  const header = html`<p><a href="#/vms">← VMs</a></p><h1>VM ${name}</h1>`;
  if (vm === null && jobs.length === 0) return html`${header}<p role="alert" class="error">No VM "${name}".</p>`;
  return html`${header}
    ${error && html`<p role="alert" class="error">${error}</p>`}
    ${
      vm === null
        ? html`<p class="muted" data-testid="vm-gone">This VM no longer exists.</p>`
        : vm &&
          html`<dl class="facts wide">
            <dt>State</dt><dd data-testid="vm-state"><span class=${`state s-${vm.state}`}>${vm.state}</span></dd>
            <dt>Host</dt><dd data-testid="vm-host">${vm.hostId || "—"}</dd>
            <dt>Memory</dt><dd>${fmtMiB(vm.memoryMiB)}</dd>
            <dt>vCPUs</dt><dd>${vm.vcpus}</dd>
            <dt>Addresses</dt><dd>${(vm.addresses ?? []).join(", ") || "—"}</dd>
            <dt>Labels</dt><dd>${Object.entries(vm.labels ?? {}).map(([k, v]) => html`<span class="label">${k}=${v}</span>`)}</dd>
            ${vm.createdAt && html`<dt>Age</dt><dd data-testid="vm-age">${fmtAge(vm.createdAt)}</dd>`}
            <dt>Updated</dt><dd>${fmtAge(vm.updatedAt)} ago</dd>
          </dl>`
    }
    ${
      vm &&
      can(me, "vms:write") &&
      html`<div class="actions">
        ${
          confirming
            ? html`<span role="alert">Destroy ${name}? This removes its disks.</span>
                <button type="button" class="danger" onClick=${destroy}>Yes, destroy</button>
                <button type="button" onClick=${() => setConfirming(false)}>Keep it</button>`
            : html`<button type="button" class="danger" onClick=${() => setConfirming(true)}>Destroy</button>`
        }
      </div>`
    }
    <h2>Jobs</h2>
    ${jobs.length === 0 && html`<p class="muted">No jobs of this VM are kept any more.</p>`}
    ${jobs.map((id, i) => html`<${JobSection} key=${id} jobId=${id} open=${i === jobs.length - 1} />`)}
    <h2>Serial console</h2>
    ${vm && html`<${Console} name=${name} />`}`;
}
