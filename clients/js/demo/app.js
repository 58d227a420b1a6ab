// The demo page: one tenant per window (?as=alice or ?as=bob), its private
// notes and the shared roadmap, live. Plain ES modules, no build step: the
// daemon serves the client module beside this file.
import { Client, indexedDBStorage } from "./transports-client.js";

const $ = (id) => document.getElementById(id);
const tenant = new URLSearchParams(location.search).get("as");

// Keeps the page openable offline (a reload while the server is down).
if ("serviceWorker" in navigator) navigator.serviceWorker.register("sw.js").catch(() => {});

for (const a of document.querySelectorAll("#tenants a"))
  if (a.dataset.tenant === tenant) a.classList.add("current");

if (tenant !== "alice" && tenant !== "bob") {
  $("pick").hidden = false;
} else {
  start(tenant);
}

function start(tenant) {
  document.title = `${tenant} · transports demo`;
  $("app").hidden = false;
  for (const el of document.querySelectorAll(".who")) el.textContent = tenant;

  // One storage key per tab (sessionStorage survives a reload, not a new
  // tab): two windows of one tenant must not share a client id.
  let tab = sessionStorage.getItem("transports-demo-tab");
  if (!tab) sessionStorage.setItem("transports-demo-tab", (tab = crypto.randomUUID()));
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const client = new Client(`${scheme}//${location.host}/ws/${tenant}`, {
    storage: indexedDBStorage(`demo-${tenant}-${tab}`),
  });
  window.transportsClient = client; // for the console (and the end-to-end test)

  const showPending = () => {
    const n = client.pending;
    $("pending").textContent = n === 0 ? "all changes saved" : `${n} change${n > 1 ? "s" : ""} not yet confirmed`;
    $("cid").textContent = client.clientId || "";
  };
  setInterval(showPending, 250);

  const labels = { connecting: "connecting…", open: "live", waiting: "offline, retrying…", closed: "closed" };
  client.on("status", (s) => {
    $("status").className = "status " + s;
    $("status").querySelector("span").textContent = labels[s];
    showPending();
  });


  let errorTimer;
  const showError = (text) => {
    $("error").textContent = text;
    $("error").hidden = false;
    clearTimeout(errorTimer);
    errorTimer = setTimeout(() => ($("error").hidden = true), 6000);
  };
  client.on("error", (e) => showError(`${e.code}: ${e.message}`));

  bind(client, "private", "notes", $("notes"), $("notes-title"), $("notes-rev"), null, showError, showPending);
  bind(client, "shared", "roadmap", $("roadmap"), $("roadmap-title"), $("roadmap-rev"), $("roadmap-access"), showError, showPending);
}

// Shows one model in a textarea and writes what is typed into its `body`.
// On the shared model, presence: who else is here and where their caret is.
function bind(client, scope, id, area, title, rev, badge, showError, showPending) {
  let off, offHere;
  const here = document.getElementById(id + "-here");
  const showHere = (m) => {
    const names = [...m.presence.others.values()].map((s) => `${s.name} (at ${s.caret})`);
    here.textContent = names.length ? "here too: " + names.join(", ") : "nobody else here";
  };
  const caret = () => {
    const m = client.model(scope, id);
    if (here && m) m.presence.set({ name: client.tenant ?? "?", caret: area.selectionStart ?? 0 });
  };
  const render = (m) => {
    const body = m.value.body ?? "";
    if (area.value !== body) {
      // Keep the caret where it was when someone else's change arrives.
      const [s, e] = [area.selectionStart, area.selectionEnd];
      area.value = body;
      if (document.activeElement === area) area.setSelectionRange(s, e);
    }
    title.textContent = m.value.title ?? id;
    rev.textContent = `rev ${m.rev}`;
    area.disabled = false;
    if (badge) {
      const ro = m.access !== "write";
      badge.textContent = ro ? "read-only" : "you can edit";
      badge.className = "badge " + (ro ? "ro" : "rw");
      const why = document.getElementById(id + "-why");
      why.hidden = !ro;
      why.textContent = ro ? `${client.tenant ?? "this tenant"} is subscribed to the roadmap with read access: its changes are refused (forbidden) and undone.` : "";
      area.classList.toggle("readonly", ro);
    }
  };
  const attach = () => {
    const m = client.model(scope, id);
    if (!m) return;
    off?.();
    off = m.subscribe(() => render(m));
    render(m);
    if (here) {
      offHere?.();
      offHere = m.presence.subscribe(() => showHere(m));
      showHere(m);
      caret();
    }
  };
  client.on("model", (e) => {
    if (e.scope !== scope || e.id !== id) return;
    if (e.event === "removed") {
      off?.();
      area.disabled = true;
      rev.textContent = "removed";
    } else attach();
  });
  area.addEventListener("input", () => {
    const m = client.model(scope, id);
    if (!m) return;
    m.write({ body: area.value }).then(showPending, (e) => {
      // Refused: the model's view is rolled back already; show it.
      area.classList.add("refused");
      setTimeout(() => area.classList.remove("refused"), 800);
      area.value = m.value.body ?? "";
      showError(`${id}: ${e.code}: ${e.message}`);
    });
    showPending();
    caret();
  });
  for (const ev of ["keyup", "click", "select"]) area.addEventListener(ev, caret);
  attach();
}
