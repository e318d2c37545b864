import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { api, can, fmtLeft } from "../api.js";

function PoolVms({ pool, me, onChange }) {
  const [detail, setDetail] = useState(undefined);
  const load = () =>
    api("GET", `/v1/pools/${encodeURIComponent(pool)}`)
      .then(setDetail)
      .catch(() => setDetail(null));
  useEffect(() => {
    load();
  }, [pool]);
  const release = async (vm) => {
    await api("DELETE", `/v1/pools/${encodeURIComponent(pool)}/claims/${encodeURIComponent(vm)}`).catch(
      () => undefined,
    );
    load();
    onChange();
  };
  if (!detail) return null;
  return html`<ul class="vm-list">
    ${detail.vms.map(
      (v) => html`<li data-vm=${v.name}>
        <a href=${`#/vms/${encodeURIComponent(v.name)}`}>${v.name}</a>
        <span class=${`state s-${v.state}`}>${v.state}</span>${v.stale ? html` <span class="pill warn">stale</span>` : ""}
        ${v.expiresAt && html` <span class="countdown" title=${v.expiresAt}>lease ${fmtLeft(v.expiresAt)}</span>`}
        ${v.state === "claimed" && can(me, "vms:write") && html` <button type="button" onClick=${() => release(v.name)}>Release ${v.name}</button>`}
      </li>`,
    )}
  </ul>`;
}

export function LabsPage({ me }) {
  const [pools, setPools] = useState(undefined);
  const [labs, setLabs] = useState(undefined);
  const [note, setNote] = useState("");
  const [, tick] = useState(0);
  const load = () => {
    api("GET", "/v1/pools")
      .then(setPools)
      .catch(() => setPools(null));
    api("GET", "/v1/labs")
      .then(setLabs)
      .catch(() => setLabs(null));
  };
  useEffect(() => {
    load();
    const t = setInterval(load, 5000);
    const s = setInterval(() => tick((x) => x + 1), 1000);
    return () => {
      clearInterval(t);
      clearInterval(s);
    };
  }, []);
  const claim = async (pool) => {
    try {
      const r = await api("POST", `/v1/pools/${encodeURIComponent(pool)}/claims`, {});
      setNote(`Claimed ${r.vm} on ${r.host}; lease ends ${new Date(r.expiresAt).toLocaleTimeString()}.`);
    } catch (e) {
      setNote(e.message);
    }
    load();
  };
  return html`<h1>Labs & pools</h1>
    ${note && html`<p role="status">${note}</p>`}
    <h2>Pools</h2>
    ${pools === null && html`<p class="muted">Pools are not available.</p>`}
    ${pools?.length === 0 && html`<p class="muted">No pools.</p>`}
    ${
      pools?.length > 0 &&
      html`<table class="plain">
        <thead><tr><th scope="col">Pool</th><th scope="col">Ready</th><th scope="col">Starting</th><th scope="col">Claimed</th><th scope="col">Stale</th><th scope="col">Target</th><th scope="col">VMs</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${pools.map(
          (p) => html`<tr data-pool=${p.name}>
            <th scope="row">${p.name}</th><td class="num">${p.ready}</td><td class="num">${p.starting}</td><td class="num">${p.claimed}</td>
            <td class="num">${p.stale}</td><td class="num">${p.target}${p.below ? html` <span class="muted">(${p.below})</span>` : ""}</td>
            <td><${PoolVms} pool=${p.name} me=${me} onChange=${load} /></td>
            <td>${can(me, "vms:write") && html`<button type="button" disabled=${p.ready === 0} onClick=${() => claim(p.name)}>Claim from ${p.name}</button>`}</td>
          </tr>`,
        )}</tbody>
      </table>`
    }
    <h2>Labs</h2>
    ${labs === null && html`<p class="muted">Labs are not available.</p>`}
    ${labs?.length === 0 && html`<p class="muted">No labs.</p>`}
    ${
      labs?.length > 0 &&
      html`<table class="plain">
        <thead><tr><th scope="col">Lab</th><th scope="col">State</th><th scope="col">VMs</th><th scope="col">Lease</th></tr></thead>
        <tbody>${labs.map(
          (l) => html`<tr data-lab=${l.name}>
            <th scope="row">${l.name}</th><td><span class=${`state s-${l.state}`}>${l.state}</span>${l.reason ? html` <span class="muted">${l.reason}</span>` : ""}</td>
            <td>${l.vms.map((v) => html`<a href=${`#/vms/${encodeURIComponent(v.name)}`}>${v.name}</a> `)}</td>
            <td class="countdown" title=${l.expiresAt}>${fmtLeft(l.expiresAt)}</td>
          </tr>`,
        )}</tbody>
      </table>`
    }`;
}
