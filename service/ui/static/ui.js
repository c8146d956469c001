// initscore /ui: fetches server-rendered fragments with the API key kept in sessionStorage (never sent elsewhere).
"use strict";
const main = document.getElementById("main");
let timer = null;
let shown = 0;  // the latest show(): an earlier one still awaiting its fragments must not render over it

function key() { return sessionStorage.getItem("initscore-key") || ""; }
function headers() { const k = key(); return k ? { "Authorization": "Bearer " + k } : {}; }

async function fragment(path) {
  const r = await fetch(path, { headers: headers() });
  const text = await r.text();
  if (!r.ok) {
    let detail = text;
    try { detail = JSON.parse(text).detail || text; } catch (e) { /* not JSON */ }
    const err = new Error(detail); err.status = r.status; throw err;
  }
  return text;
}

function sortable(root) {
  root.querySelectorAll("table.sortable").forEach(t => {
    t.querySelectorAll("th").forEach((th, i) => th.addEventListener("click", () => {
      const asc = !th.classList.contains("asc");
      t.querySelectorAll("th").forEach(h => h.classList.remove("asc", "desc"));
      th.classList.add(asc ? "asc" : "desc");
      const body = t.tBodies[0];
      const val = td => td.dataset.sort !== undefined ? parseFloat(td.dataset.sort) : td.textContent.trim();
      const rows = Array.from(body.rows).sort((a, b) => {
        const x = val(a.cells[i]), y = val(b.cells[i]);
        const c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(r => body.appendChild(r));
    }));
  });
  root.querySelectorAll("button.dl").forEach(b => b.addEventListener("click", async () => {
    const r = await fetch(b.dataset.url, { headers: headers() });
    if (!r.ok) { b.textContent = "download failed: " + r.status; return; }
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a"); a.href = url; a.download = b.dataset.name;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    b.dataset.done = "1";
  }));
}

async function show() {
  clearTimeout(timer);
  const mine = ++shown;
  const h = location.hash.replace(/^#/, "") || "/";
  try {
    document.getElementById("who").innerHTML = await fragment("/ui/fragments/whoami");
    const admin = document.querySelector("#who [data-admin]")?.dataset.admin === "true";
    document.getElementById("admin-link").hidden = !admin;
    let html, live = false;
    const m = h.match(/^\/jobs\/([A-Za-z0-9_]+)$/);
    if (m) {
      html = await fragment("/ui/fragments/jobs/" + encodeURIComponent(m[1]));
      live = /data-status="(queued|running)"/.test(html);
    } else if (h === "/admin") {
      html = await fragment("/ui/fragments/admin"); live = true;
    } else {
      const c = h.match(/^\/\?cursor=([0-9]{1,18})$/);
      html = "<h2>Your jobs</h2>" + await fragment("/ui/fragments/jobs" + (c ? "?cursor=" + c[1] : ""));
      live = true;  // new submissions appear without a reload
    }
    if (mine !== shown) return;
    main.innerHTML = html;
    sortable(main);
    if (live) timer = setTimeout(show, 2000);
  } catch (err) {
    if (mine !== shown) return;
    document.getElementById("who").textContent = "";
    main.innerHTML = "";
    const p = document.createElement("p"); p.className = "err";
    p.textContent = err.status === 401 ? "Sign in with an API key." : (err.status === 404 ? "Not found." : String(err.message));
    main.appendChild(p);
  }
}

document.getElementById("signin").addEventListener("submit", ev => {
  ev.preventDefault();
  sessionStorage.setItem("initscore-key", document.getElementById("key").value);
  document.getElementById("key").value = "";
  show();
});
document.getElementById("signout").addEventListener("click", () => { sessionStorage.removeItem("initscore-key"); location.hash = "#/"; show(); });
window.addEventListener("hashchange", show);
show();
