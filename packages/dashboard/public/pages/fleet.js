import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { api, fmtMiB, missing } from "../api.js";

function Bar({ label, used, total, fmt = String }) {
  const pct = total > 0 ? Math.min(100, Math.round((used / total) * 100)) : 0;
  return html`<div class="bar-row">
    <span class="bar-label">${label}</span>
    <div class="bar" role="meter" aria-label=${label} aria-valuemin="0" aria-valuemax=${total} aria-valuenow=${used}
      aria-valuetext=${`${fmt(used)} of ${fmt(total)}`}>
      <div class=${pct > 90 ? "fill hot" : "fill"} style=${`width:${pct}%`}></div>
    </div>
    <span class="bar-value">${fmt(used)} / ${fmt(total)}</span>
  </div>`;
}

function health(h) {
  if (!h.up) return ["lost", "bad"];
  if (h.draining) return ["draining", "warn"];
  return ["up", "ok"];
}

export function FleetPage({ me }) {
  const [hosts, setHosts] = useState(undefined);
  const [vms, setVms] = useState([]);
  const [error, setError] = useState("");
  const [note, setNote] = useState("");
  const admin = me.scopes.includes("admin");
  const load = () => {
    api("GET", "/v1/hosts")
      .then((h) => {
        setHosts(h);
        setError("");
      })
      .catch((e) => setError(e.status === 403 ? "This token may not read hosts (hosts:read)." : e.message));
    api("GET", "/v1/vms")
      .then(setVms)
      .catch(() => undefined);
  };
  useEffect(() => {
    load();
    const t = setInterval(load, 3000);
    return () => clearInterval(t);
  }, []);
  const drain = async (hostId, undo) => {
    try {
      await api("POST", `/v1/hosts/${encodeURIComponent(hostId)}/${undo ? "undrain" : "drain"}`);
      setNote("");
      load();
    } catch (e) {
      setNote(missing(e) ? "Draining from the dashboard is not available on this server." : e.message);
    }
  };
  if (error) return html`<h1>Fleet</h1><p role="alert" class="error">${error}</p>`;
  if (hosts === undefined) return html`<h1>Fleet</h1><p>Loading…</p>`;
  return html`<h1>Fleet</h1>
    ${note && html`<p role="status" class="warn-text">${note}</p>`}
    <p class="muted">${hosts.length} host${hosts.length === 1 ? "" : "s"}</p>
    <ul class="cards" aria-label="Hosts">
      ${hosts.map((h) => {
        const [state, cls] = health(h);
        const mine = vms.filter((v) => v.hostId === h.hostId);
        return html`<li class="card" data-host=${h.hostId}>
          <h2>${h.hostId} <span class=${`pill ${cls}`}>${state}</span></h2>
          <${Bar} label="Memory" used=${h.allocated.memoryMiB} total=${h.capacity.memoryMiB} fmt=${fmtMiB} />
          <${Bar} label="vCPUs" used=${h.allocated.vcpus} total=${h.capacity.vcpus} />
          <dl class="facts">
            <dt>Free disk</dt><dd>${h.diskFreeGiB} GiB</dd>
            <dt>Running VMs</dt><dd>${h.runningVms}</dd>
            <dt>Virt</dt><dd>${(h.virtTypes ?? []).join(", ")}</dd>
            <dt>Version</dt><dd>${h.version}</dd>
          </dl>
          <div class="labels">${Object.entries(h.labels ?? {}).map(([k, v]) => html`<span class="label">${k}=${v}</span>`)}</div>
          ${
            mine.length > 0 &&
            html`<details open=${mine.length <= 8}><summary>${mine.length} of your VMs</summary>
              <ul class="vm-list">${mine.map((v) => html`<li><a href=${`#/vms/${encodeURIComponent(v.name)}`}>${v.name}</a> <span class="muted">${v.state}</span></li>`)}</ul>
            </details>`
          }
          ${
            admin &&
            html`<div class="actions">
              ${
                h.draining
                  ? html`<button type="button" onClick=${() => drain(h.hostId, true)}>Undrain ${h.hostId}</button>`
                  : html`<button type="button" class="warn" onClick=${() => drain(h.hostId, false)}>Drain ${h.hostId}</button>`
              }
            </div>`
          }
        </li>`;
      })}
    </ul>`;
}
