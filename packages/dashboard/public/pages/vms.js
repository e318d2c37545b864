import { elementScroll, observeElementOffset, observeElementRect, Virtualizer } from "@tanstack/virtual-core";
import { html } from "htm/preact";
import { useEffect, useLayoutEffect, useMemo, useReducer, useRef, useState } from "preact/hooks";
import { api, fmtAge, fmtLeft, fmtMiB } from "../api.js";

const ROW = 34;
const COLUMNS = [
  ["name", "Name"],
  ["hostId", "Host"],
  ["state", "State"],
  ["memoryMiB", "Memory"],
  ["vcpus", "vCPUs"],
  ["addresses", "Addresses"],
  ["labels", "Labels"],
  ["age", "Age"],
  ["lease", "Lease"],
];

/** A windowed list: only the rows in view (and a few more) are in the page. */
function useVirtualizer(count, scrollRef) {
  const [, rerender] = useReducer((x) => x + 1, 0);
  const options = {
    count,
    getScrollElement: () => scrollRef.current,
    estimateSize: () => ROW,
    overscan: 12,
    scrollToFn: elementScroll,
    observeElementRect,
    observeElementOffset,
    onChange: () => rerender(),
    initialRect: { width: 1000, height: 600 },
  };
  const ref = useRef(undefined);
  ref.current ??= new Virtualizer(options);
  ref.current.setOptions(options);
  useLayoutEffect(() => ref.current._didMount(), []);
  useLayoutEffect(() => ref.current._willUpdate());
  return ref.current;
}

function sortValue(v, key, leases) {
  if (key === "addresses") return (v.addresses ?? []).join(",");
  if (key === "labels") return Object.entries(v.labels ?? {}).join(",");
  if (key === "age") return -Date.parse(v.createdAt ?? v.updatedAt ?? 0);
  if (key === "lease") return leases.get(v.name) ?? "";
  return v[key] ?? "";
}

export function VmTable({ vms, leases }) {
  const [filter, setFilter] = useState("");
  const [sort, setSort] = useState(["name", 1]);
  const rows = useMemo(() => {
    const f = filter.trim().toLowerCase();
    const shown = f
      ? vms.filter((v) =>
          [
            v.name,
            v.hostId,
            v.state,
            ...(v.addresses ?? []),
            ...Object.entries(v.labels ?? {}).map(([k, x]) => `${k}=${x}`),
          ]
            .join(" ")
            .toLowerCase()
            .includes(f),
        )
      : vms.slice();
    const [key, dir] = sort;
    shown.sort((a, b) => {
      const x = sortValue(a, key, leases);
      const y = sortValue(b, key, leases);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    return shown;
  }, [vms, filter, sort, leases]);
  const scrollRef = useRef(null);
  const virtualizer = useVirtualizer(rows.length, scrollRef);
  useEffect(() => {
    if (vms.length > 0 && !performance.getEntriesByName("vms:rendered").length)
      requestAnimationFrame(() => performance.mark("vms:rendered"));
  }, [vms.length > 0]);
  const now = Date.now();
  return html`<div class="table-tools">
      <label for="vm-filter">Filter</label>
      <input id="vm-filter" type="search" value=${filter} onInput=${(e) => setFilter(e.target.value)}
        placeholder="name, host, state, address, label=value" />
      <span class="muted" aria-live="polite">${rows.length} of ${vms.length} VMs</span>
    </div>
    <div class="vtable" role="table" aria-label="VMs" aria-rowcount=${rows.length + 1}>
      <div class="vrow head" role="row" aria-rowindex="1">
        ${COLUMNS.map(([key, label]) => {
          const active = sort[0] === key;
          return html`<div role="columnheader" class="cell" aria-sort=${active ? (sort[1] > 0 ? "ascending" : "descending") : "none"}>
            <button type="button" class="sort" onClick=${() => setSort([key, active ? -sort[1] : 1])}>
              ${label}${active ? (sort[1] > 0 ? " ▲" : " ▼") : ""}
            </button>
          </div>`;
        })}
      </div>
      <div class="vbody" ref=${scrollRef} tabindex="0" aria-label="VM rows (scroll)">
        <div style=${`height:${virtualizer.getTotalSize()}px;position:relative`}>
          ${virtualizer.getVirtualItems().map((item) => {
            const v = rows[item.index];
            return html`<div class="vrow" role="row" aria-rowindex=${item.index + 2} data-vm=${v.name} key=${v.name}
              style=${`position:absolute;top:0;left:0;right:0;height:${ROW}px;transform:translateY(${item.start}px)`}>
              <div role="cell" class="cell"><a href=${`#/vms/${encodeURIComponent(v.name)}`}>${v.name}</a></div>
              <div role="cell" class="cell">${v.hostId || html`<span class="muted">—</span>`}</div>
              <div role="cell" class="cell"><span class=${`state s-${v.state}`}>${v.state}</span></div>
              <div role="cell" class="cell num">${fmtMiB(v.memoryMiB)}</div>
              <div role="cell" class="cell num">${v.vcpus}</div>
              <div role="cell" class="cell">${(v.addresses ?? []).join(", ")}</div>
              <div role="cell" class="cell">${Object.entries(v.labels ?? {}).map(([k, x]) => html`<span class="label">${k}=${x}</span>`)}</div>
              <div role="cell" class="cell">${fmtAge(v.createdAt ?? v.updatedAt, now)}</div>
              <div role="cell" class="cell">${fmtLeft(leases.get(v.name), now)}</div>
            </div>`;
          })}
        </div>
      </div>
    </div>`;
}

/** VM name → its lease's expiry, from the pools' claimed VMs. */
async function loadLeases() {
  const leases = new Map();
  try {
    const pools = await api("GET", "/v1/pools");
    for (const p of pools.filter((x) => x.claimed > 0)) {
      const d = await api("GET", `/v1/pools/${encodeURIComponent(p.name)}`);
      for (const v of d.vms) if (v.expiresAt) leases.set(v.name, v.expiresAt);
    }
  } catch {
    // no pools (or not allowed): no lease column values
  }
  return leases;
}

export function VmsPage() {
  const [vms, setVms] = useState(undefined);
  const [leases, setLeases] = useState(new Map());
  const [error, setError] = useState("");
  useEffect(() => {
    let alive = true;
    if (!performance.getEntriesByName("vms:mount").length) performance.mark("vms:mount");
    const load = () =>
      api("GET", "/v1/vms")
        .then((list) => {
          if (!alive) return;
          if (!performance.getEntriesByName("vms:data").length) performance.mark("vms:data");
          setVms(list);
        })
        .catch((e) => setError(e.message));
    load();
    loadLeases().then((l) => alive && setLeases(l));
    const t = setInterval(load, 3000);
    const tick = setInterval(() => setLeases((l) => new Map(l)), 1000);
    return () => {
      alive = false;
      clearInterval(t);
      clearInterval(tick);
    };
  }, []);
  return html`<h1>VMs</h1>
    ${error && html`<p role="alert" class="error">${error}</p>`}
    ${vms === undefined ? html`<p>Loading…</p>` : html`<${VmTable} vms=${vms} leases=${leases} />`}`;
}
