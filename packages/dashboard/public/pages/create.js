import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { api, can } from "../api.js";
import { BatchProgress, recentBatches } from "./batch.js";
import { Timeline, useJobEvents } from "./timeline.js";

// The form builds the API's own request body; its limits come from the JSON Schema the server
// generates from the API's zod schemas (GET /ui/schema/create-vm.json), and before it is sent the
// body is checked by those same schemas (POST /ui/validate/…), so the form and the API cannot disagree.

const INITIAL = {
  name: "",
  count: "1",
  memoryMiB: "512",
  vcpus: "1",
  diskGiB: "10",
  backing: "",
  method: "import",
  cdrom: "",
  kernel: "",
  initrd: "",
  kernelArgs: "",
  virtType: "",
  labels: "",
  host: "",
  policy: "",
};

function parseLabels(text) {
  const labels = {};
  for (const part of text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [k, ...v] = part.split("=");
    labels[k] = v.join("=");
  }
  return labels;
}

/** The API request the form stands for: `POST /v1/vms` or (count > 1) `POST /v1/batches`. */
export function requestOf(f) {
  const count = Number(f.count);
  const install =
    f.method === "kernel"
      ? {
          method: "kernel",
          kernel: f.kernel,
          ...(f.initrd ? { initrd: f.initrd } : {}),
          ...(f.kernelArgs ? { kernelArgs: f.kernelArgs } : {}),
        }
      : f.method === "cdrom"
        ? { method: "cdrom", image: f.cdrom }
        : { method: "import" };
  const spec = {
    name: f.name,
    memoryMiB: Number(f.memoryMiB),
    vcpus: Number(f.vcpus),
    disks: [{ sizeGiB: Number(f.diskGiB), ...(f.backing ? { backing: f.backing } : {}) }],
    install,
    networks: [],
    ...(f.virtType ? { virtType: f.virtType } : {}),
    ...(f.labels.trim() ? { labels: parseLabels(f.labels) } : {}),
  };
  const placement = { ...(f.host ? { host: f.host } : {}), ...(f.policy ? { policy: f.policy } : {}) };
  const extra = Object.keys(placement).length > 0 ? { placement } : {};
  if (count > 1) return { kind: "batch", path: "/v1/batches", body: { template: spec, count, ...extra } };
  return { kind: "create-vm", path: "/v1/vms", body: { spec, ...extra } };
}

const q = (s) => `'${String(s).replaceAll("'", "'\\''")}'`;

export function cliOf(f) {
  const args = ["virtfleet", "create", "--name", q(f.name), "--memory", f.memoryMiB, "--vcpus", f.vcpus];
  args.push("--disk", q(`size=${f.diskGiB}${f.backing ? `,backing=${f.backing}` : ""}`));
  if (f.method === "import") args.push("--import");
  if (f.method === "cdrom") args.push("--cdrom", q(f.cdrom));
  if (f.method === "kernel")
    args.push(
      "--boot",
      q(
        `kernel=${f.kernel}${f.initrd ? `,initrd=${f.initrd}` : ""}${f.kernelArgs ? `,kernel_args=${f.kernelArgs}` : ""}`,
      ),
    );
  args.push("--network", "none");
  if (f.virtType) args.push("--virt-type", f.virtType);
  for (const [k, v] of Object.entries(parseLabels(f.labels))) args.push("--vm-label", q(`${k}=${v}`));
  if (f.host) args.push("--host", q(f.host));
  if (f.policy) args.push("--policy", f.policy);
  if (Number(f.count) > 1) args.push("--count", f.count);
  return args.join(" ");
}

export function curlOf(f) {
  const r = requestOf(f);
  return `curl -X POST ${q(location.origin + r.path)} -H "Authorization: Bearer $VIRTFLEET_TOKEN" -H 'Content-Type: application/json' -d ${q(JSON.stringify(r.body))}`;
}

/** Input attributes from the JSON Schema of one spec field. */
function limits(schema, key) {
  const s = schema?.properties?.spec?.properties?.[key];
  if (!s) return {};
  return {
    ...(s.minimum === undefined ? {} : { min: s.minimum }),
    ...(s.maximum === undefined ? {} : { max: s.maximum }),
    ...(s.maxLength === undefined ? {} : { maxLength: s.maxLength }),
  };
}

const FIELD_OF = {
  name: "name",
  memoryMiB: "memoryMiB",
  vcpus: "vcpus",
  "disks.0.sizeGiB": "diskGiB",
  "disks.0.backing": "backing",
  "install.kernel": "kernel",
  "install.initrd": "initrd",
  "install.kernelArgs": "kernelArgs",
  "install.image": "cdrom",
  labels: "labels",
  virtType: "virtType",
  count: "count",
  "placement.host": "host",
};

/** Problem issues → { formField: message }. */
function fieldErrors(problem) {
  const out = {};
  for (const i of problem?.issues ?? [{ field: problem?.field, message: problem?.detail }]) {
    const path = String(i.field ?? "")
      .replace(/^(spec|template)\./, "")
      .replace(/^(labels)\..*/, "$1");
    out[FIELD_OF[path] ?? "_"] = `${i.field ?? ""}: ${i.message}`;
  }
  return out;
}

function Field({ id, label, form, set, errors, children, ...rest }) {
  const err = errors[id];
  return html`<div class="field">
    <label for=${`f-${id}`}>${label}</label>
    ${
      children ??
      html`<input id=${`f-${id}`} name=${id} value=${form[id]} onInput=${(e) => set(id, e.target.value)}
        aria-invalid=${err ? "true" : undefined} aria-describedby=${err ? `e-${id}` : undefined} ...${rest} />`
    }
    ${err && html`<span id=${`e-${id}`} class="error field-error" role="alert">${err}</span>`}
  </div>`;
}

function JobProgress({ jobId, vm }) {
  const [events] = useJobEvents(jobId);
  return html`<section class="job-progress" data-job=${jobId} aria-label=${`Progress of ${vm}`}>
    <h3><a href=${`#/vms/${encodeURIComponent(vm)}`}>${vm}</a> <span class="muted">${events.at(-1)?.phase ?? "queued"}</span></h3>
    <${Timeline} events=${events} label=${`Phases of ${vm}`} />
  </section>`;
}

export function CreatePage({ me }) {
  const [form, setForm] = useState(INITIAL);
  const [schema, setSchema] = useState(undefined);
  const [errors, setErrors] = useState({});
  const [busy, setBusy] = useState(false);
  const [started, setStarted] = useState([]);
  const [copied, setCopied] = useState("");
  useEffect(() => {
    api("GET", "/ui/schema/create-vm.json")
      .then(setSchema)
      .catch(() => undefined);
  }, []);
  if (!can(me, "vms:write"))
    return html`<h1>Create</h1><p class="muted">This token may not create VMs (vms:write).</p>`;
  const set = (k, v) => setForm((f) => ({ ...f, [k]: v }));
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setErrors({});
    const r = requestOf(form);
    try {
      await api("POST", `/ui/validate/${r.kind}`, r.body);
      const answer = await api("POST", r.path, r.body);
      if (r.kind === "batch") {
        recentBatches.unshift(answer.batchId);
        setStarted((s) => [{ batchId: answer.batchId }, ...s]);
      } else setStarted((s) => [{ jobId: answer.jobId, vm: answer.vm }, ...s]);
    } catch (err) {
      setErrors(fieldErrors(err.body));
    } finally {
      setBusy(false);
    }
  };
  const copy = async (what, text) => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied(`${what} command copied.`);
    } catch {
      setCopied(`Copy the ${what} command from the box below.`);
    }
  };
  const common = { form, set, errors };
  return html`<h1>Create VMs</h1>
    <form class="create" onSubmit=${submit} novalidate=${false}>
      <fieldset><legend>VM</legend>
        <${Field} id="name" label=${Number(form.count) > 1 ? "Name pattern (with {n})" : "Name"} required ...${common} ...${limits(schema, "name")} />
        <${Field} id="count" label="Count" type="number" min="1" max="1000" required ...${common} />
        <${Field} id="memoryMiB" label="Memory (MiB)" type="number" required ...${common} ...${limits(schema, "memoryMiB")} />
        <${Field} id="vcpus" label="vCPUs" type="number" required ...${common} ...${limits(schema, "vcpus")} />
        <${Field} id="diskGiB" label="Disk (GiB)" type="number" min="1" required ...${common} />
        <${Field} id="backing" label="Disk backing image (optional)" ...${common} />
        <${Field} id="labels" label="Labels (key=value, comma separated)" ...${common} />
      </fieldset>
      <fieldset><legend>Install</legend>
        <${Field} id="method" label="Method" ...${common}>
          <select id="f-method" value=${form.method} onChange=${(e) => set("method", e.target.value)}>
            <option value="import">import (boot the disk)</option>
            <option value="kernel">kernel (direct boot)</option>
            <option value="cdrom">cdrom (ISO)</option>
          </select>
        <//>
        ${form.method === "cdrom" && html`<${Field} id="cdrom" label="ISO image" required ...${common} />`}
        ${
          form.method === "kernel" &&
          html`<${Field} id="kernel" label="Kernel image" required ...${common} />
            <${Field} id="initrd" label="Initrd image" ...${common} />
            <${Field} id="kernelArgs" label="Kernel arguments" ...${common} />`
        }
        <${Field} id="virtType" label="Virtualization" ...${common}>
          <select id="f-virtType" value=${form.virtType} onChange=${(e) => set("virtType", e.target.value)}>
            <option value="">host default</option><option value="kvm">kvm</option><option value="qemu">qemu (TCG)</option>
          </select>
        <//>
      </fieldset>
      <fieldset><legend>Placement</legend>
        <${Field} id="host" label="Host (optional)" ...${common} />
        <${Field} id="policy" label="Policy" ...${common}>
          <select id="f-policy" value=${form.policy} onChange=${(e) => set("policy", e.target.value)}>
            <option value="">spread (default)</option><option value="pack">pack</option>
          </select>
        <//>
      </fieldset>
      ${errors._ && html`<p role="alert" class="error">${errors._}</p>`}
      <div class="actions">
        <button type="submit" disabled=${busy}>Create</button>
        <button type="button" onClick=${() => copy("CLI", cliOf(form))}>Copy as CLI</button>
        <button type="button" onClick=${() => copy("curl", curlOf(form))}>Copy as curl</button>
        <span role="status" class="muted">${copied}</span>
      </div>
      <details><summary>Commands</summary>
        <label for="cli-text">CLI</label><textarea id="cli-text" readonly rows="2">${cliOf(form)}</textarea>
        <label for="curl-text">curl</label><textarea id="curl-text" readonly rows="3">${curlOf(form)}</textarea>
      </details>
    </form>
    <h2>Started</h2>
    ${started.length === 0 && html`<p class="muted">Nothing yet.</p>`}
    ${started.map((s) =>
      s.batchId
        ? html`<${BatchProgress} key=${s.batchId} batchId=${s.batchId} />`
        : html`<${JobProgress} key=${s.jobId} jobId=${s.jobId} vm=${s.vm} />`,
    )}`;
}
