import { html, render } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, api, can } from "./api.js";
import { CreatePage } from "./pages/create.js";
import { FleetPage } from "./pages/fleet.js";
import { JobsPage } from "./pages/jobs.js";
import { LabsPage } from "./pages/labs.js";
import { VmPage } from "./pages/vm.js";
import { VmsPage } from "./pages/vms.js";

const PAGES = [
  ["fleet", "Fleet"],
  ["vms", "VMs"],
  ["jobs", "Jobs"],
  ["labs", "Labs & pools"],
  ["create", "Create"],
];

function useRoute() {
  const read = () => (location.hash.replace(/^#\/?/, "") || "fleet").split("/").map(decodeURIComponent);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () =>
      setRoute((now) => {
        const next = read();
        return next.length === now.length && next.every((x, i) => x === now[i]) ? now : next;
      });
    addEventListener("hashchange", on);
    // The hash may have changed between the first render and now (effects run after paint): a
    // navigation right after sign-in would otherwise be lost until the next one.
    on();
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}

function SignIn({ onSignedIn }) {
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    const token = new FormData(e.target).get("token");
    try {
      onSignedIn(await api("POST", "/ui/session", { token }));
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? "Unknown token." : err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="signin">
    <h1>virtfleet</h1>
    <form onSubmit=${submit} aria-describedby="signin-help">
      <label for="token">API token</label>
      <input id="token" name="token" type="password" autocomplete="off" required autofocus />
      <p id="signin-help" class="muted">The token is checked by the API and kept on the server; the browser holds only a session cookie.</p>
      ${error && html`<p role="alert" class="error">${error}</p>`}
      <button type="submit" disabled=${busy}>Sign in</button>
    </form>
  </main>`;
}

function Shell({ me, onSignOut }) {
  const [page, ...rest] = useRoute();
  const signOut = async () => {
    await api("DELETE", "/ui/session").catch(() => undefined);
    onSignOut();
  };
  let body;
  if (page === "vms" && rest[0]) body = html`<${VmPage} me=${me} name=${rest[0]} />`;
  else if (page === "vms") body = html`<${VmsPage} me=${me} />`;
  else if (page === "jobs") body = html`<${JobsPage} me=${me} />`;
  else if (page === "labs") body = html`<${LabsPage} me=${me} />`;
  else if (page === "create") body = html`<${CreatePage} me=${me} />`;
  else body = html`<${FleetPage} me=${me} />`;
  return html`<div class="shell">
    <a class="skip" href="#main">Skip to content</a>
    <header>
      <span class="brand">virtfleet</span>
      <nav aria-label="Pages">
        ${PAGES.map(
          ([id, label]) => html`<a href=${`#/${id}`} aria-current=${page === id ? "page" : undefined}>${label}</a>`,
        )}
        ${me.scopes.includes("admin") && html`<a href="/ui/queues">Queues</a>`}
      </nav>
      <span class="who" data-testid="who">${me.tenant} · ${me.tokenId}${can(me, "vms:write") ? "" : " (read-only)"}</span>
      <button type="button" class="ghost" onClick=${signOut}>Sign out</button>
    </header>
    <main id="main" tabindex="-1">${body}</main>
  </div>`;
}

function App() {
  const [me, setMe] = useState(undefined);
  useEffect(() => {
    api("GET", "/ui/session")
      .then(setMe)
      .catch(() => setMe(null));
  }, []);
  if (me === undefined) return html`<p class="boot">Loading…</p>`;
  if (me === null) return html`<${SignIn} onSignedIn=${setMe} />`;
  return html`<${Shell} me=${me} onSignOut=${() => setMe(null)} />`;
}

render(html`<${App} />`, document.getElementById("app"));
