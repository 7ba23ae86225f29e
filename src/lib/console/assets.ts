import {createHash} from 'node:crypto'

/**
 * The console's only two assets, shipped inside the package (no CDN, nothing to download,
 * works air-gapped). The pages work without JavaScript: every action is a plain form POST.
 * The script only adds auto refresh with a pause control, live relative times, and "/" to
 * focus the filter. A dozen lines of our own beat htmx's 50 kB here, and CSP stays
 * script-src 'self' with no inline script or style.
 */
export const CONSOLE_CSS = `
:root { color-scheme: light dark; --bg: #fff; --fg: #1b1f24; --muted: #59636e; --line: #d1d9e0; --card: #f6f8fa;
  --accent: #0969da; --danger: #cf222e; --warn: #9a6700; --ok: #1a7f37; --focus: #0969da; }
@media (prefers-color-scheme: dark) { :root { --bg: #0d1117; --fg: #e6edf3; --muted: #9198a1; --line: #3d444d;
  --card: #151b23; --accent: #4493f8; --danger: #f85149; --warn: #d29922; --ok: #3fb950; --focus: #4493f8; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, summary:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.skip { position: absolute; left: -999px; } .skip:focus { left: 8px; top: 8px; background: var(--bg); padding: 4px 8px; z-index: 2; }
header { display: flex; flex-wrap: wrap; gap: 4px 16px; align-items: center; padding: 8px 16px; border-bottom: 1px solid var(--line); background: var(--card); }
header .brand { font-weight: 700; margin-right: 8px; }
header nav { display: flex; flex-wrap: wrap; gap: 4px 14px; }
header nav a[aria-current="page"] { font-weight: 700; text-decoration: none; color: var(--fg); }
header .who { margin-left: auto; display: flex; gap: 8px; align-items: center; color: var(--muted); font-size: 13px; }
main { padding: 12px 16px 48px; max-width: 1400px; }
h1 { font-size: 22px; margin: 8px 0 12px; } h2 { font-size: 17px; margin: 22px 0 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(130px, 1fr)); gap: 8px; }
.sparkline { display: block; color: var(--accent); border-bottom: 1px solid var(--line); margin: 4px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; background: var(--card); }
.card .n { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; } .card .l { color: var(--muted); font-size: 13px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { color: var(--muted); font-weight: 600; white-space: nowrap; } tbody th { font-weight: 500; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.err { max-width: 42ch; overflow-wrap: anywhere; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
pre { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 10px; overflow: auto; max-height: 60vh; white-space: pre-wrap; overflow-wrap: anywhere; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; } dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
form.inline { display: inline; }
.filter { display: flex; flex-wrap: wrap; gap: 8px; align-items: end; margin: 8px 0 12px; }
.filter label { display: flex; flex-direction: column; font-size: 13px; color: var(--muted); }
.filter input[type=text], .filter input[type=search] { min-width: min(520px, 90vw); }
input, select, button, textarea { font: inherit; color: inherit; background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 5px 8px; }
button { cursor: pointer; background: var(--card); }
button.primary { background: var(--accent); color: #fff; border-color: var(--accent); }
button.danger { background: var(--danger); color: #fff; border-color: var(--danger); }
.actions { display: flex; flex-wrap: wrap; gap: 8px; margin: 8px 0; }
.actions form { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
.banner { border: 1px solid var(--line); border-left: 4px solid var(--warn); padding: 8px 12px; border-radius: 6px; margin: 8px 0; background: var(--card); }
.banner.error { border-left-color: var(--danger); } .banner.ok { border-left-color: var(--ok); }
.pill { display: inline-block; border-radius: 999px; padding: 0 8px; font-size: 12px; border: 1px solid var(--line); white-space: nowrap; }
.live { color: var(--ok); } .dead { color: var(--danger); } .unknown { color: var(--warn); }
.muted { color: var(--muted); }
.pager { display: flex; gap: 12px; margin: 10px 0; }
.refresh { display: flex; gap: 8px; align-items: center; color: var(--muted); font-size: 13px; }
main.login { max-width: 420px; margin: 10vh auto; } main.login form { display: flex; flex-direction: column; gap: 8px; margin: 12px 0; }
@media (max-width: 640px) { th.wide, td.wide { display: none; } main { padding: 8px; } }
`

export const CONSOLE_JS = `"use strict";
(function () {
  var main = document.querySelector("main[data-refresh]");
  var toggle = document.getElementById("refresh-toggle");
  var every = main ? Number(main.getAttribute("data-refresh")) * 1000 : 0;
  var paused = sessionStorage.getItem("backfill-paused") === "1";
  function label() { if (toggle) { toggle.textContent = paused ? "Resume auto refresh" : "Pause auto refresh"; toggle.setAttribute("aria-pressed", String(paused)); } }
  function refresh() {
    if (paused || document.hidden || !main) return;
    fetch(location.href, {headers: {"x-backfill-fragment": "main"}, credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (!text || paused) return;
        var doc = new DOMParser().parseFromString(text, "text/html");
        var next = doc.querySelector("main[data-refresh]");
        if (next && !main.contains(document.activeElement)) { main.replaceWith(next); main = next; times(); }
      }).catch(function () {});
  }
  if (toggle) { toggle.hidden = false; label(); toggle.addEventListener("click", function () { paused = !paused; sessionStorage.setItem("backfill-paused", paused ? "1" : "0"); label(); }); }
  if (every > 0) setInterval(refresh, every);
  function ago(ms) { var s = Math.round(Math.abs(ms) / 1000); if (s < 1) return "just now"; var t = s < 60 ? s + "s" : s < 3600 ? Math.floor(s / 60) + "m" : s < 172800 ? Math.floor(s / 3600) + "h" : Math.floor(s / 86400) + "d"; return ms >= 0 ? t + " ago" : "in " + t; }
  function times() { var now = Date.now(); document.querySelectorAll("time[data-relative]").forEach(function (el) { var at = Date.parse(el.getAttribute("datetime")); if (!isNaN(at)) el.textContent = ago(now - at); }); }
  setInterval(times, 15000);
  document.addEventListener("keydown", function (e) {
    var filter = document.getElementById("filter");
    if (e.key === "/" && filter && document.activeElement !== filter && !/INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName)) { e.preventDefault(); filter.focus(); }
  });
})();
`

function etag(text: string): string {
  return `"${createHash('sha256').update(text).digest('base64url').slice(0, 16)}"`
}

export const ASSETS: Record<string, {type: string; body: string; etag: string}> = {
  '/assets/console.css': {type: 'text/css; charset=utf-8', body: CONSOLE_CSS, etag: etag(CONSOLE_CSS)},
  '/assets/console.js': {type: 'text/javascript; charset=utf-8', body: CONSOLE_JS, etag: etag(CONSOLE_JS)},
}
