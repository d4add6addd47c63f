// demandpipe page: one feature (k rings, w minutes) of one product in one
// closed minute, as an SVG hexagon heat map from GET /v1/map (boundaries
// come from the server); a timeline over GET /v1/minutes to scrub and play
// back; the hottest cells as a table; the selected cell's features (54 in
// the default definition) from GET /v1/features. The view lives in the URL
// (?definition=…&product=…&k=…&w=…&scale=…&minute=…&cell=…&at=lat,lng,zoom),
// so a reload or a shared link restores it; no minute means "follow the
// latest". No libraries: the page must work offline.
//
// Definitions (issue 23): when GET /v1/definitions lists more than one,
// a picker offers "active (NAME)", which follows promotions (the list is
// re-read on every refresh), and each definition by name and spec. Every
// API call then names the chosen one (definition=NAME; none for
// "active"), and so does the URL. The status line names the definition
// that answered the map (its Demandpipe-Definition header), so a promotion
// shows. A cell is one resolution's: when the definition changes, a
// selected cell of another resolution is re-picked by its place (the cell
// of the new resolution at its centre), or dropped if not drawn. With one
// definition (or a server of one, which has no list) the picker is hidden.
//
// The map is Web Mercator (see "projection"). With -serve.basemap the page
// draws raster tiles of that URL template under the hexagons (which turn
// translucent), reloading them as the view pans and zooms, and shows the
// provider's credit (-serve.basemap-attribution) in the map's corner;
// without it nothing is loaded from elsewhere.
//
// The header says how old the latest minute is, ticking ("latest minute
// 10:07 UTC, 42 s ago · live"), and whether the store is live: its latest
// minute at most LIVE_MAX_AGE_S old by the server's clock. A replay (or a
// run that stopped) says "replay" and the date, its status line too, and
// the live button becomes "latest". Before the first minute closes, the
// page says when it should: from a server in the run's process, "the first
// minute (10:07 UTC) closes in about 42 s", counting down between polls
// and looking again just after it is due (waitingText); from a standalone
// server, the default lateness's estimate (WAITING).
//
// Test hooks: body[data-ready] is "1" once the first view is drawn,
// body[data-url] is the view's query string; window.demandpipe exposes the
// pure helpers, and window.DEMANDPIPE_NO_MAIN skips start-up (unit tests).
"use strict";

const $ = (id) => document.getElementById(id);
const refreshMs = Number(document.body.dataset.refreshMs) || 10000;
const TOP_ROWS = 10;
// A store is live while its latest minute is at most this old by the
// server's clock: a live run closes a minute every 60 s, 30-90 s after its
// end (the lateness, 30 s by default), so 3 min allows one missed close,
// as the server's -serve.ready-max-age=3m does. An older latest minute is
// a replay of old data, or a run that stopped.
const LIVE_MAX_AGE_S = 180;
const PLAY_STEP_MS = 700;
const basemap = document.body.dataset.basemap || "";          // tile URL template, "": none
const attribution = document.body.dataset.basemapAttribution || "";
const TILE_MAX_Z = 19; // the deepest tiles providers commonly have (OpenStreetMap's)
const SVG_NS = "http://www.w3.org/2000/svg";
// What the page says before the first minute closes. A minute closes once
// event time passes its end plus the lateness. A server in the run's
// process (demandpipe run) knows both and says when the first minute
// should close (GET /v1/minutes "first_close": waitingText counts it
// down); a standalone server knows neither the run's lateness
// (-windows.lateness) nor its event time, so this is the estimate for the
// default lateness: on a live run, 30-90 s after the first event.
const WAITING = "waiting for the first minute to close: a minute closes once event time passes its end plus the lateness; with the default lateness (30 s), about 90 s after a live run starts (an estimate: this server does not see the run)";

// ---- pure helpers (unit-tested in Chromium through window.demandpipe) ----

// ago renders an age in seconds for people: "42 s ago", "3 min ago",
// "2 h ago", "5 d ago", "10 y ago"; a negative age is in the future.
function ago(s) {
  if (!Number.isFinite(s)) return "";
  const fut = s < 0;
  s = Math.abs(s);
  let t;
  if (s < 60) t = Math.floor(s) + " s";
  else if (s < 3600) t = Math.floor(s / 60) + " min";
  else if (s < 2 * 86400) t = Math.floor(s / 3600) + " h";
  else if (s < 2 * 365.25 * 86400) t = Math.floor(s / 86400) + " d";
  else t = Math.floor(s / (365.25 * 86400)) + " y";
  return fut ? "in " + t : t + " ago";
}

// minuteLabel: "2024-05-18T02:41:00Z" -> "2024-05-18 02:41 UTC".
function minuteLabel(m) {
  return m ? m.slice(0, 10) + " " + m.slice(11, 16) + " UTC" : "";
}

// Viridis, lightened at the bottom so the smallest values stay visible on
// the dark background.
const RAMP = [[0x48, 0x28, 0x78], [0x3e, 0x4a, 0x89], [0x31, 0x68, 0x8e], [0x26, 0x82, 0x8e],
  [0x1f, 0x9e, 0x89], [0x35, 0xb7, 0x79], [0x6d, 0xcd, 0x59], [0xb4, 0xde, 0x2c], [0xfd, 0xe7, 0x25]];

function color(t) {
  t = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(t)), f = t - i;
  const c = RAMP[i].map((a, j) => Math.round(a + (RAMP[i + 1][j] - a) * f));
  return "rgb(" + c.join(",") + ")";
}

// scaler maps a value in [lo, hi] to [0, 1], linearly or by its log.
function scaler(kind, lo, hi) {
  if (!(hi > lo)) return () => 1;
  if (kind === "log") {
    const a = Math.log(Math.max(lo, 1)), b = Math.log(hi);
    return (v) => (Math.log(Math.max(v, 1)) - a) / (b - a);
  }
  return (v) => (v - lo) / (hi - lo);
}

// ticks: a few round values in [lo, hi] for the legend, ends included.
function ticks(kind, lo, hi) {
  if (!(hi > lo)) return [hi];
  const out = new Set([lo, hi]);
  if (kind === "log") {
    for (let p = 1; p <= hi; p *= 10) for (const m of [1, 2, 5]) {
      const v = m * p;
      if (v > lo && v < hi) out.add(v);
    }
  } else {
    const raw = (hi - lo) / 5, p = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || raw;
    for (let v = Math.ceil(lo / step) * step; v < hi; v += step) if (v > lo) out.add(v);
  }
  const s = [...out].sort((a, b) => a - b);
  // Drop ticks crowding their neighbours (closer than 9% of the bar).
  const f = scaler(kind, lo, hi), keep = [s[0]];
  for (const v of s.slice(1)) if (f(v) - f(keep[keep.length - 1]) >= 0.09 || v === hi) keep.push(v);
  if (keep.length > 2 && f(hi) - f(keep[keep.length - 2]) < 0.09) keep.splice(keep.length - 2, 1);
  return keep;
}

const PARAMS = ["definition", "product", "k", "w", "scale", "minute", "cell", "at"];
const DEFINITION_NAME = /^[a-z][a-z0-9_]{0,31}$/; // feature.ValidateName

// parseView reads the view from a query string; absent fields are null.
function parseView(search) {
  const q = new URLSearchParams(search), v = {};
  for (const p of PARAMS) v[p] = q.has(p) ? q.get(p) : null;
  for (const p of ["k", "w"]) v[p] = v[p] !== null && /^\d+$/.test(v[p]) ? Number(v[p]) : null;
  if (v.scale !== "log" && v.scale !== "linear") v.scale = null;
  if (v.definition !== null && !DEFINITION_NAME.test(v.definition)) v.definition = null;
  if (v.at !== null) {
    const a = v.at.split(",").map(Number);
    v.at = a.length === 3 && a.every(Number.isFinite) && Math.abs(a[0]) <= 90 && Math.abs(a[1]) <= 180 ? { lat: a[0], lng: a[1], z: a[2] } : null;
  }
  return v;
}

// formatView writes the view as a query string, fields in a fixed order.
function formatView(v) {
  const q = [];
  for (const p of PARAMS) {
    let x = v[p];
    if (x === null || x === undefined || x === "") continue;
    if (p === "at") x = x.lat.toFixed(5) + "," + x.lng.toFixed(5) + "," + x.z.toFixed(2);
    q.push(p + "=" + encodeURIComponent(String(x)).replace(/%2C/g, ",").replace(/%3A/g, ":"));
  }
  return q.length ? "?" + q.join("&") : "";
}

// cellRes is the H3 resolution of a cell in hex ("882a100d65fffff": 8),
// -1 if it is not a cell's: bits 52-55 of the index, its third hex digit
// of 16.
function cellRes(h3) {
  if (typeof h3 !== "string" || !/^[0-9a-f]{15,16}$/.test(h3)) return -1;
  const s = h3.padStart(16, "0");
  return s[1] === "8" ? parseInt(s[2], 16) : -1; // mode 1: a cell
}

// withDefinition adds definition=NAME to an API URL (none: the active).
// /v1/definitions lists them all and takes none.
function withDefinition(url, name) {
  if (!name || !url.startsWith("/v1/") || url.startsWith("/v1/definitions")) return url;
  return url + (url.includes("?") ? "&" : "?") + "definition=" + encodeURIComponent(name);
}

// definitionOption is a /v1/definitions entry as a picker's option: the
// name and resolution (and status unless dark) as its text, the whole
// spec and the minutes it holds as its title.
function definitionOption(d) {
  const st = d.status === "dark" ? "" : " · " + d.status;
  const mins = d.first_minute ? ` · minutes ${minuteLabel(d.first_minute)} to ${minuteLabel(d.last_minute)}` : " · no closed minute";
  const agg = d.aggregate || "count"; // how its windows fold their minutes (CONTRACT.md rule 4a)
  return {
    text: `${d.name} · res ${d.resolution}${agg === "count" ? "" : " · " + agg}${st}`,
    title: `res ${d.resolution} · rings k=${d.rings.join(",")} · windows w=${d.windows.join(",")} · aggregate ${agg} · ${d.status}${mins}`,
  };
}

// isLive: is a latest minute ageS old (by the server's clock) a live store's?
function isLive(ageS) { return Number.isFinite(ageS) && ageS <= LIVE_MAX_AGE_S; }

// latestText: "latest minute 10:07 UTC, 42 s ago · live" on a live store;
// a replay's names the day: "latest minute 2014-04-30 23:59 UTC, 12 y ago · replay".
function latestText(minute, ageS) {
  const live = isLive(ageS);
  return `latest minute ${live ? minute.slice(11, 16) + " UTC" : minuteLabel(minute)}, ${ago(ageS)} · ${live ? "live" : "replay"}`;
}

// inAbout renders a wait in seconds: "42 s", "3 min" (from 90 s).
function inAbout(s) {
  return s < 90 ? Math.max(1, Math.round(s)) + " s" : Math.round(s / 60) + " min";
}

// clockLabel: "2024-06-01T10:07:48.250Z" -> "10:07:48 UTC".
function clockLabel(t) { return t.slice(11, 19) + " UTC"; }

// waitingText is what the page says before the first minute closes, from
// GET /v1/minutes' "first_close" fc (null: the server cannot see the run,
// WAITING), elapsedS seconds after the server answered: "the first minute
// (10:07 UTC) closes in about 42 s", counting down; before event time is
// known (fewer than K riders seen) it says so.
function waitingText(fc, elapsedS) {
  if (!fc) return WAITING;
  const lat = `lateness ${fc.lateness_seconds} s`;
  const first = fc.minute ? `the first minute (${fc.minute.slice(11, 16)} UTC)` : null;
  const at = fc.minute ? clockLabel(new Date(Date.parse(fc.minute) + (60 + fc.lateness_seconds) * 1000).toISOString()) : "";
  if (!fc.event_time) {
    return `waiting for event time: fewer than ${fc.riders} riders seen` + (first ? `; ${first} closes once event time reaches ${at} (${lat})` : "");
  }
  if (!first) return `waiting for the first counted event · event time ${clockLabel(fc.event_time)}`;
  if (fc.eta_seconds === null) return `${first} closes once event time reaches ${at} (${lat}); event time (${clockLabel(fc.event_time)}) is not advancing`;
  const pace = !fc.rate_measured ? "" : Math.abs(fc.rate - 1) < 0.05 ? ", real time" : `, ${fc.rate < 10 ? fc.rate.toFixed(1) : Math.round(fc.rate)}× real time`;
  const detail = ` · event time ${clockLabel(fc.event_time)}${pace} · ${lat}`;
  const left = fc.eta_seconds - elapsedS;
  return (left < 0.5 ? `${first} is due to close now` : `${first} closes in about ${inAbout(left)}`) + detail;
}

// Web Mercator. mercY is the projected y of a latitude in degrees of
// longitude: 0 at the equator, 180 at the top edge of the z/x/y tiles
// (latitude 85.0511°, where the map is square); latOfMercY inverts it.
const R2D = 180 / Math.PI, MAX_LAT = 85.0511287798;
function mercY(lat) {
  lat = Math.max(-MAX_LAT, Math.min(MAX_LAT, lat));
  return R2D * Math.log(Math.tan(Math.PI / 4 + lat / (2 * R2D)));
}
function latOfMercY(y) { return R2D * (2 * Math.atan(Math.exp(y / R2D)) - Math.PI / 2); }

// tilesFor lists the tiles covering a W×H view centred on at ({lat, lng,
// z}): at the whole zoom nearest the view's (so a tile is drawn at 71% to
// 141% of its 256 px), each with its address (z, x wrapped around the
// antimeridian, y), its unwrapped column tx, and its square on the screen
// in whole pixels, so that neighbours meet without a seam. The view's
// centre is at (W/2, H/2), as the hexagons' transform puts it.
function tilesFor(at, W, H) {
  const z = Math.max(0, Math.min(TILE_MAX_Z, Math.round(at.z)));
  const n = Math.pow(2, z), k = Math.pow(2, at.z - z); // screen px per tile px
  const gx = ((at.lng + 180) / 360) * 256 * n, gy = ((180 - mercY(at.lat)) / 360) * 256 * n; // the centre, in tile px
  const sx = (tx) => Math.round(W / 2 + (tx * 256 - gx) * k), sy = (ty) => Math.round(H / 2 + (ty * 256 - gy) * k);
  const out = [];
  for (let y = Math.max(0, Math.floor((gy - H / 2 / k) / 256)); y <= Math.min(n - 1, Math.floor((gy + H / 2 / k) / 256)); y++) {
    for (let tx = Math.floor((gx - W / 2 / k) / 256); tx <= Math.floor((gx + W / 2 / k) / 256); tx++) {
      out.push({ z, x: ((tx % n) + n) % n, y, tx, left: sx(tx), top: sy(y), w: sx(tx + 1) - sx(tx), h: sy(y + 1) - sy(y) });
    }
  }
  return out;
}

// tileURL fills a -serve.basemap template with a tile's address.
function tileURL(tmpl, t) {
  return tmpl.replaceAll("{z}", String(t.z)).replaceAll("{x}", String(t.x)).replaceAll("{y}", String(t.y));
}

// featureText says what feature (k, w) is under the definition's aggregate
// (docs/CONTRACT.md rule 4a; /v1/definition's "aggregate").
function featureText(k, w, aggregate) {
  const rings = k === 0 ? "in the cell" : k === 1 ? "within 1 ring" : `within ${k} rings`;
  switch (aggregate) {
    case "max": return w === 1 ? `riders ${rings} in the minute` : `riders ${rings} in the busiest of the last ${w} minutes`;
    case "minutes": return w === 1 ? `whether riders were ${rings} in the minute` : `minutes of the last ${w} with riders ${rings}`;
  }
  const mins = w === 1 ? "in the minute" : `over the last ${w} minutes`;
  return `riders ${rings} ${mins}`;
}

window.demandpipe = { featureText, ago, minuteLabel, waitingText, color, scaler, ticks, parseView, formatView, cellRes, withDefinition, definitionOption, isLive, latestText, mercY, latOfMercY, tilesFor, tileURL };

// ---- state ----

const view = { definition: null, product: null, k: null, w: null, scale: null, minute: null, cell: null, at: null };
let def = null;            // /v1/definition
let defName = null;        // the name of def (its Demandpipe-Definition header; null from a server of one)
let defs = null;           // /v1/definitions; null from a server of one
let answered = null;       // the definition that answered the map drawn
let repick = null;         // {lat, lng}: select the cell there once the map of a new resolution is drawn
let defSeq = 0;            // drops superseded definition switches
let products = [];         // UUIDs
let names = {};            // UUID -> name
let minutes = [];          // /v1/minutes, oldest first
let minutesAt = 0;         // performance.now() when minutes were read: their ages tick on from there
let firstClose = null;     // /v1/minutes' first_close (before the first minute closes, from a server in the run's process)
let waiting = false;       // the page waits for the first minute: drawLive counts down
let early = null;          // timer of the poll due just after the first minute's close
let data = null;           // the /v1/map answer drawn
let ref = null;            // projection reference: {lat, lng, y: mercY(lat)}
let playing = null;        // timer while playing
let loadSeq = 0;           // drops answers of superseded loads

// A server with -serve.token-file wants a bearer token on /v1/; the page
// itself is open (it holds no data). The token comes from a link's
// fragment, #token=… (a fragment is never sent to a server, and the page
// drops it from the address bar at once), or from the token field the
// page shows when the API answers 401. It is kept for this tab only
// (sessionStorage), and sent with every request.
const TOKEN_KEY = "demandpipe.token";
let token = null;

function storage() {
  try { return window.sessionStorage; } catch (e) { return null; }
}

function setToken(t) {
  token = t;
  try { storage()?.setItem(TOKEN_KEY, t); } catch (e) { /* private mode: memory only */ }
}

function loadToken() {
  token = storage()?.getItem(TOKEN_KEY) || null;
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (!m) return;
  try { setToken(decodeURIComponent(m[1])); } catch (e) { /* a malformed link: ask */ }
  history.replaceState(null, "", location.pathname + location.search);
}

// fetchJSON reads an API URL, naming the chosen definition, and returns
// the answer and the definition that answered (null from a server of
// one); an error says the server's message, and the definition too.
async function fetchJSON(url) {
  const res = await fetch(withDefinition(url, view.definition), { cache: "no-store", headers: token ? { Authorization: "Bearer " + token } : {} });
  const body = await res.json().catch(() => ({}));
  const definition = res.headers.get("Demandpipe-Definition");
  if (res.status === 401 && $("tokenform").hidden) {
    $("tokenform").hidden = false;
    $("token").focus();
  }
  if (!res.ok) throw Object.assign(new Error(body.error || res.status + " " + res.statusText), { definition });
  return { body, definition };
}

async function getJSON(url) { return (await fetchJSON(url)).body; }

function setStatus(text, error) {
  const s = $("status");
  s.textContent = text;
  s.className = error ? "error" : "";
}

function showError(e) { setStatus("error: " + e.message, true); }

function productName(u) { return names[u] || u; }

function writeURL() {
  const q = formatView(view);
  if (location.search !== q) history.replaceState(null, "", location.pathname + q);
  document.body.dataset.url = q;
}

// ---- projection: Web Mercator (EPSG:3857), the projection of the z/x/y
// tiles of a basemap, so that hexagons and tiles line up all over the
// view. (The page used to stretch latitude by a constant 1/cos of a
// reference latitude, a plate carrée that agrees with Mercator at that
// latitude only: at zoom 12 in New York, 7 px off half a degree north or
// south of it, and more after panning away.) World units are 1000 per
// degree of longitude, in x and in Mercator y, around a fixed reference
// to keep the numbers small; the view (centre, zoom) is an SVG transform,
// so panning and zooming never rebuild the polygons. zoom is web-map
// zoom, the tiles': 256·2^z pixels around the world. ----

function size() {
  const r = $("map").getBoundingClientRect();
  return { W: Math.max(r.width, 100), H: Math.max(r.height, 100) };
}

function setRef(lat, lng) { ref = { lat, lng, y: mercY(lat) }; }

function toWorld(lat, lng) {
  return [(lng - ref.lng) * 1000, -(mercY(lat) - ref.y) * 1000];
}

function fromWorld(x, y) {
  return { lat: latOfMercY(ref.y - y / 1000), lng: ref.lng + x / 1000 };
}

function pxPerDeg(z) { return (256 * Math.pow(2, z)) / 360; }

function applyView() {
  if (!ref || !view.at) return;
  const { W, H } = size();
  $("map").setAttribute("viewBox", `0 0 ${W} ${H}`);
  const s = pxPerDeg(view.at.z) / 1000, [cx, cy] = toWorld(view.at.lat, view.at.lng);
  $("world").setAttribute("transform", `translate(${W / 2} ${H / 2}) scale(${s}) translate(${-cx} ${-cy})`);
  // Scale bar: a round distance near 110 px.
  const kmPx = pxPerDeg(view.at.z) / (111.32 * Math.cos((view.at.lat * Math.PI) / 180));
  const km = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500].find((d) => d * kmPx >= 70) || 1000;
  $("scalebar").querySelector(".bar").style.width = (km * kmPx).toFixed(0) + "px";
  $("scalebar").querySelector("span").textContent = km < 1 ? km * 1000 + " m" : km + " km";
  drawTiles();
}

// drawTiles lays the basemap's tiles under the hexagons (the SVG's first
// group, in screen pixels), fetching the ones the view newly needs and
// dropping those it left; a tile that fails to load leaves the background.
const tileEls = new Map(); // "z/tx/y" -> <image>
function drawTiles() {
  if (!basemap || !view.at) return;
  const { W, H } = size(), keep = new Set();
  for (const t of tilesFor(view.at, W, H)) {
    const key = t.z + "/" + t.tx + "/" + t.y;
    keep.add(key);
    let im = tileEls.get(key);
    if (!im) {
      im = document.createElementNS(SVG_NS, "image");
      im.setAttribute("href", tileURL(basemap, t));
      im.setAttribute("data-tile", t.z + "/" + t.x + "/" + t.y);
      im.setAttribute("preserveAspectRatio", "none");
      im.addEventListener("error", () => im.setAttribute("visibility", "hidden"));
      $("tiles").appendChild(im);
      tileEls.set(key, im);
    }
    im.setAttribute("x", t.left);
    im.setAttribute("y", t.top);
    im.setAttribute("width", t.w);
    im.setAttribute("height", t.h);
  }
  for (const [key, im] of tileEls) if (!keep.has(key)) { im.remove(); tileEls.delete(key); }
}

function fit() {
  if (!data || data.cells.length === 0) return;
  let a = 90, b = -90, c = 180, d = -180;
  for (const cell of data.cells) for (const [la, ln] of cell[2]) {
    a = Math.min(a, la); b = Math.max(b, la); c = Math.min(c, ln); d = Math.max(d, ln);
  }
  const ya = mercY(a), yb = mercY(b), lat = latOfMercY((ya + yb) / 2);
  if (!ref) setRef(lat, (c + d) / 2);
  const { W, H } = size();
  const zx = Math.log2((W * 0.9 * 360) / (256 * Math.max(d - c, 1e-6)));
  const zy = Math.log2((H * 0.9 * 360) / (256 * Math.max(yb - ya, 1e-6)));
  view.at = { lat, lng: (c + d) / 2, z: Math.min(zx, zy, 15) };
  applyView();
}

function zoomAt(factor, px, py) {
  if (!view.at) return;
  const { W, H } = size();
  const z = Math.max(2, Math.min(18, view.at.z + Math.log2(factor)));
  const s0 = pxPerDeg(view.at.z) / 1000, s1 = pxPerDeg(z) / 1000;
  const [cx, cy] = toWorld(view.at.lat, view.at.lng);
  // Keep the world point under (px, py) where it is.
  const wx = cx + (px - W / 2) / s0, wy = cy + (py - H / 2) / s0;
  const nx = wx - (px - W / 2) / s1, ny = wy - (py - H / 2) / s1;
  view.at = { ...fromWorld(nx, ny), z };
  applyView();
}

// ---- drawing ----

function centre(b) {
  let la = 0, ln = 0;
  for (const [x, y] of b) { la += x; ln += y; }
  return [la / b.length, ln / b.length];
}

function draw(d) {
  data = d;
  const svg = $("map"), cells = d.cells;
  svg.dataset.cells = String(cells.length);
  $("empty").hidden = cells.length > 0;
  $("empty").textContent = cells.length ? "" : `no demand for this product at k=${d.k} w=${d.w} in ${minuteLabel(d.minute)}`;
  let lo = Infinity, hi = 0;
  for (const c of cells) { lo = Math.min(lo, c[1]); hi = Math.max(hi, c[1]); }
  if (!cells.length) lo = hi = 0;
  if (!ref && view.at) setRef(view.at.lat, view.at.lng);
  if (!ref || !view.at) fit();
  const f = scaler(view.scale, lo, hi);
  // Coolest first, so the hottest cells draw on top of their neighbours.
  const order = cells.slice().sort((a, b) => a[1] - b[1]);
  const parts = [];
  for (const [cell, v, b] of order) {
    const pts = b.map(([la, ln]) => toWorld(la, ln).map((x) => x.toFixed(2)).join(",")).join(" ");
    parts.push(`<polygon points="${pts}" fill="${color(f(v))}" data-h3="${cell}" data-v="${v}"></polygon>`);
  }
  $("cells").innerHTML = parts.join("");
  applyView();
  drawLegend(d, lo, hi);
  drawTop(d, f);
  drawSelection();
  // "live" only while following the latest minute of a live store; any
  // minute of a replay says "replay".
  const live = storeLive(), mode = !live ? " · replay" : view.minute === null ? " · live" : "";
  setStatus(`${productName(d.product_type)} · ${minuteLabel(d.minute)} (${ago(d.age_seconds)})${mode} · k=${d.k} w=${d.w} · ${cells.length} cells` + (d.truncated ? " (hottest only)" : "") + definitionNote());
}

// definitionNote names the definition that answered the map, when there
// are several: " · definition fine (active)".
function definitionNote() {
  if (!answered || !defs || defs.definitions.length < 2) return "";
  return ` · definition ${answered}` + (answered === defs.active ? " (active)" : "");
}

function drawLegend(d, lo, hi) {
  const scale = view.scale;
  $("legend-title").textContent = `Colour: ${featureText(d.k, d.w, def && def.aggregate)} (k=${d.k}, w=${d.w})`;
  const stops = [];
  for (let i = 0; i <= 10; i++) stops.push(color(i / 10));
  $("legend").querySelector(".bar").style.background = `linear-gradient(to right, ${stops.join(",")})`;
  const f = scaler(scale, lo, hi);
  $("legend-ticks").innerHTML = d.cells.length ? ticks(scale, lo, hi).map((v) => `<span style="left:${(f(v) * 100).toFixed(1)}%">${v}</span>`).join("") : "";
  const txt = d.cells.length === 0 ? `${scale} scale · no non-zero cell` :
    lo === hi ? `${scale} scale · every cell has the value ${hi} (min = max = ${hi})` :
    `${scale} scale · min ${lo} · max ${hi} · ${d.cells.length} non-zero cells in this minute; zero cells are not drawn`;
  $("legend-scale").textContent = txt;
  $("legend").dataset.scale = scale;
  $("legend").dataset.min = String(lo);
  $("legend").dataset.max = String(hi);
}

function drawTop(d, f) {
  const top = d.cells.slice().sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, TOP_ROWS);
  $("top").querySelector("tbody").innerHTML = top.map(([cell, v, b], i) => {
    const [la, ln] = centre(b);
    return `<tr data-h3="${cell}"${cell === view.cell ? ' class="sel"' : ""}><td>${i + 1}</td>` +
      `<td><span class="swatch" style="background:${color(f(v))}"></span>${cell}</td><td class="num">${v}</td>` +
      `<td class="num">${la.toFixed(4)}, ${ln.toFixed(4)}</td></tr>`;
  }).join("");
  $("top-note").textContent = d.cells.length > TOP_ROWS ? `${TOP_ROWS} of ${d.cells.length}` : "";
}

function drawSelection() {
  const sel = $("sel");
  sel.innerHTML = "";
  for (const tr of $("top").querySelectorAll("tbody tr")) tr.classList.toggle("sel", tr.dataset.h3 === view.cell);
  if (!view.cell || !data) return;
  const p = $("cells").querySelector(`polygon[data-h3="${view.cell}"]`);
  if (p) {
    p.classList.add("selected");
    sel.innerHTML = `<polygon points="${p.getAttribute("points")}" data-h3="${view.cell}"></polygon>`;
  }
}

async function loadDetail() {
  const box = $("detail"), at = repick;
  repick = null;
  if (!(view.cell || at) || !view.product) {
    box.innerHTML = `<h2>Selected cell</h2><p class="hint">Click a cell on the map or in the table.</p>`;
    return;
  }
  const q = new URLSearchParams(view.cell ? { h3: view.cell } : { lat: at.lat.toFixed(6), lng: at.lng.toFixed(6) });
  q.set("product", view.product);
  if (data) q.set("minute", data.minute);
  try {
    const r = await getJSON("/v1/features?" + q);
    if (!view.cell) { // re-picked by place: the cell of this resolution there
      view.cell = r.h3;
      drawSelection();
      writeURL();
    }
    const byK = new Map();
    for (const f of r.features) {
      if (!byK.has(f.k)) byK.set(f.k, []);
      byK.get(f.k).push(f);
    }
    const ws = def.windows;
    let html = `<h2>Selected cell</h2><p><code>${r.h3}</code> · ${r.found ? `all ${r.features.length} features` : "no row: no demand, every feature is 0"}</p>`;
    html += `<table id="grid"><thead><tr><th>k \\ w</th>${ws.map((w) => `<th>${w}</th>`).join("")}</tr></thead><tbody>`;
    for (const [k, fs] of byK) {
      html += `<tr><th>${k}</th>` + fs.map((f) => `<td data-k="${f.k}" data-w="${f.w}" class="${f.k === view.k && f.w === view.w ? "cur" : ""}${f.value === 0 ? " zero" : ""}">${f.value}</td>`).join("") + "</tr>";
    }
    box.innerHTML = html + "</tbody></table>";
  } catch (e) {
    box.innerHTML = `<h2>Selected cell</h2><p class="hint">${view.cell || "the selected place"}: ${escapeHTML(e.message)}</p>`;
  }
}

function select(cell) {
  view.cell = cell || null;
  repick = null;
  drawSelection();
  writeURL();
  loadDetail();
}

// ---- timeline ----

function minuteIndex() {
  if (!minutes.length) return -1;
  if (view.minute === null) return minutes.length - 1;
  return minutes.findIndex((m) => m.minute === view.minute);
}

function drawTimeline() {
  const n = minutes.length, i = minuteIndex();
  const s = $("slider");
  s.max = String(Math.max(n - 1, 0));
  s.value = String(Math.max(i, 0));
  let mx = 1;
  for (const m of minutes) mx = Math.max(mx, m.rows);
  // Bar j sits over the slider's position j (viewBox 1000 wide).
  const bw = Math.min(12, (1000 / Math.max(n, 1)) * 0.8);
  const bars = minutes.map((m, j) => {
    const h = Math.max(1, (m.rows / mx) * 26), x = n > 1 ? (j * 1000) / (n - 1) : 500;
    return `<rect x="${(x - bw / 2).toFixed(2)}" y="${(26 - h).toFixed(2)}" width="${bw.toFixed(2)}" height="${h.toFixed(2)}"${j === i ? ' class="cur"' : ""}><title>${minuteLabel(m.minute)}: ${m.rows} rows</title></rect>`;
  });
  const sp = $("spark");
  sp.setAttribute("viewBox", "-6 0 1012 26");
  sp.innerHTML = bars.join("");
  const cur = minutes[i];
  $("when").innerHTML = cur ? `<b>${minuteLabel(cur.minute)}</b> · ${ago(cur.age_seconds)}<br>${i + 1} of ${n} minutes · ${cur.rows} rows` : "no closed minute";
  drawLive();
  $("play").textContent = playing ? "❚❚" : "▶";
  $("play").classList.toggle("on", !!playing);
}

// latestAge is the latest minute's age now: the server's answer ticked on
// by the page's clock (so a skewed client clock does not matter).
function latestAge() {
  const l = minutes[minutes.length - 1];
  return l ? l.age_seconds + (performance.now() - minutesAt) / 1000 : NaN;
}

function storeLive() { return isLive(latestAge()); }

// drawLive writes the latest minute's age, and whether the store is live,
// in the header and on the live button (highlighted while following the
// latest minute; on a replay it reads "latest"). Every second.
function drawLive() {
  if (waiting) drawWaiting();
  const l = minutes[minutes.length - 1], live = storeLive(), b = $("live");
  $("latest").textContent = l ? latestText(l.minute, latestAge()) : started ? "" : "no closed minute yet";
  $("latest").classList.toggle("live", !!l && live);
  b.textContent = live || !l ? "live" : "latest";
  b.title = live || !l ? "follow the latest closed minute" : "go to the latest closed minute (the store is not live: its latest minute is older than 3 min)";
  b.classList.toggle("on", view.minute === null && !!l);
}

function goto(i) {
  if (!minutes.length) return;
  i = Math.max(0, Math.min(minutes.length - 1, i));
  view.minute = minutes[i].minute;
  drawTimeline();
  loadMap();
}

function stopPlay() {
  if (playing) clearTimeout(playing);
  playing = null;
  drawTimeline();
}

function togglePlay() {
  if (playing) return stopPlay();
  let i = minuteIndex();
  if (i >= minutes.length - 1) i = -1; // at the end: start over
  const step = async () => {
    i++;
    if (i >= minutes.length) return stopPlay();
    view.minute = minutes[i].minute;
    playing = playing || 1;
    drawTimeline();
    await loadMap();
    if (playing) playing = setTimeout(step, PLAY_STEP_MS);
  };
  playing = 1;
  step();
}

// ---- loading ----

async function loadMinutes() {
  const r = await getJSON("/v1/minutes");
  minutes = r.minutes.slice().reverse();
  firstClose = r.first_close || null;
  minutesAt = performance.now();
}

async function loadProducts() {
  const r = await getJSON("/v1/products");
  products = r.products;
  names = r.names || {};
  const order = products.slice().sort((a, b) => (names[a] ? 0 : 1) - (names[b] ? 0 : 1) || productName(a).localeCompare(productName(b)));
  const sel = $("product");
  const html = order.map((u) => `<option value="${u}" title="${u}">${escapeHTML(productName(u))}</option>`).join("");
  if (sel.innerHTML !== html) sel.innerHTML = html;
  if (view.product) sel.value = view.product;
}

function escapeHTML(s) {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

async function loadMap() {
  const seq = ++loadSeq;
  const q = new URLSearchParams({ product: view.product, k: view.k, w: view.w });
  if (view.minute !== null) q.set("minute", view.minute);
  try {
    const { body: d, definition } = await fetchJSON("/v1/map?" + q);
    if (seq !== loadSeq) return;
    answered = definition;
    draw(d);
    writeURL();
    loadDetail();
    if (promoted(definition)) adoptDefinition().catch(showError);
  } catch (e) {
    if (seq !== loadSeq) return;
    setStatus("error: " + e.message, true);
    if (promoted(e.definition)) adoptDefinition().catch(showError); // k or w not in the new one, say
  }
}

// promoted: did another definition than the one the page shows answer
// (a promotion since the last refresh, while following the active one)?
function promoted(definition) { return !!defs && !!definition && definition !== defName; }

// ---- definitions ----

// loadDefinitions reads GET /v1/definitions and fills the picker; a
// chosen definition the deployment no longer has falls back to the active
// one. A server of one (no Demandpipe-Definition header) has no list: the
// page asks for it only when a link names a definition.
async function loadDefinitions() {
  const list = await getJSON("/v1/definitions").catch(() => null);
  if (!list && defs) return; // a failed refresh keeps the last list (and the choice)
  defs = list;
  if (view.definition !== null && !(defs && defs.definitions.some((d) => d.name === view.definition))) {
    setStatus(`definition ${view.definition} is not served here (GET /v1/definitions): showing the active one`, true);
    view.definition = null;
  }
  drawDefinitions();
}

let definitionHTML = "";

function drawDefinitions() {
  const list = defs ? defs.definitions : [];
  $("definition-label").hidden = list.length < 2;
  if (list.length < 2) return;
  const html = [`<option value="">active (${escapeHTML(defs.active)})</option>`].concat(list.map((d) => {
    const o = definitionOption(d);
    return `<option value="${escapeHTML(d.name)}" title="${escapeHTML(o.title)}">${escapeHTML(o.text)}</option>`;
  })).join("");
  if (html !== definitionHTML) $("definition").innerHTML = definitionHTML = html;
  $("definition").value = view.definition || "";
}

// loadDefinition reads the spec of the definition the page shows, with
// its products and minutes, and fills the k and w pickers.
async function loadDefinition() {
  const [d] = await Promise.all([fetchJSON("/v1/definition"), loadProducts(), loadMinutes()]);
  def = d.body;
  defName = d.definition;
  fillNumbers($("k"), def.rings);
  fillNumbers($("w"), def.windows);
}

// placeOf is the centre of a drawn cell, null if it is not drawn.
function placeOf(cell) {
  const c = cell && data ? data.cells.find((x) => x[0] === cell) : null;
  if (!c) return null;
  const [lat, lng] = centre(c[2]);
  return { lat, lng };
}

// adoptDefinition switches the page to the definition it should show now
// (the one chosen, or the active one after a promotion): its rings,
// windows, products and minutes. What of the view does not fit it is
// chosen again (k, w, product, minute: chooseDefaults), and a selected
// cell of another resolution is re-picked at its place, or dropped.
async function adoptDefinition() {
  const seq = ++defSeq;
  if (playing) stopPlay();
  const at = placeOf(view.cell);
  await loadDefinition();
  if (seq !== defSeq) return;
  if (view.cell && cellRes(view.cell) !== def.resolution) {
    view.cell = null;
    repick = at;
  }
  if (!def.rings.includes(view.k)) view.k = null;
  if (!def.windows.includes(view.w)) view.w = null;
  drawDefinitions();
  if (!minutes.length || !products.length) {
    data = null;
    $("cells").innerHTML = $("sel").innerHTML = $("top").querySelector("tbody").innerHTML = "";
    $("map").dataset.cells = "0";
    $("empty").hidden = false;
    $("empty").textContent = `definition ${defName || ""} has no closed minute yet`;
    setStatus($("empty").textContent, true);
    drawTimeline();
    writeURL();
    return;
  }
  await chooseDefaults();
  if (seq !== defSeq) return;
  syncControls();
  drawTimeline();
  await loadMap();
}

// chooseDefaults fills what the URL did not give, from the data:
// - minute: follow the latest on a live store; on a replay (latest minute
//   older than LIVE_MAX_AGE_S) the minute with the most rows, the busiest
//   picture;
// - product: the one with the most rows in that minute;
// - k, w, scale: the server's suggestion for that product and minute
//   (GET /v1/overview: the least smoothed view with at least 8 distinct
//   values, log scale when the values are skewed).
async function chooseDefaults() {
  const latest = minutes[minutes.length - 1];
  if (view.minute !== null && !minutes.some((m) => m.minute === view.minute)) {
    setStatus(`minute ${view.minute} is not in the store (expired?): showing the latest`, true);
    view.minute = null;
  }
  const fresh = PARAMS.every((p) => p === "definition" || !new URLSearchParams(location.search).has(p));
  if (view.minute === null && fresh && !isLive(latest.age_seconds)) {
    let best = latest;
    for (const m of minutes) if (m.rows >= best.rows) best = m; // ties: the latest
    view.minute = best.minute;
  }
  if (view.product !== null && !products.includes(view.product)) view.product = null;
  const at = view.minute === null ? "" : "&minute=" + view.minute;
  if (view.product === null) {
    let best = null;
    for (const u of products.slice(0, 16)) {
      const o = await getJSON("/v1/overview?product=" + u + at).catch(() => null);
      if (o && (!best || o.rows > best.rows)) best = o;
    }
    view.product = best ? best.product_type : products[0];
    if (best) suggest(best);
  }
  if (view.k === null || view.w === null || view.scale === null) {
    const o = await getJSON("/v1/overview?product=" + view.product + at).catch(() => null);
    if (o) suggest(o);
  }
  if (!def.rings.includes(view.k)) view.k = def.rings[0];
  if (!def.windows.includes(view.w)) view.w = def.windows[0];
  if (view.scale === null) view.scale = "log";
}

function suggest(o) {
  if (view.k === null) view.k = o.suggested.k;
  if (view.w === null) view.w = o.suggested.w;
  if (view.scale === null) view.scale = o.suggested.scale;
}

function syncControls() {
  $("product").value = view.product;
  $("k").value = String(view.k);
  $("w").value = String(view.w);
  $("scale").value = view.scale;
}

function fillNumbers(sel, values) {
  sel.innerHTML = values.map((v) => `<option value="${v}">${v}</option>`).join("");
}

// drawWaiting says when the first minute should close (waitingText),
// counted down from the server's answer by the page's clock.
function drawWaiting() {
  const text = waitingText(firstClose, (performance.now() - minutesAt) / 1000);
  setStatus(text);
  $("empty").hidden = false;
  $("empty").textContent = text;
}

let started = false;
let starting = false;

async function start() {
  waiting = false;
  if (view.definition !== null) await loadDefinitions(); // is the link's definition served?
  await loadDefinition();
  if (defName !== null && !defs) await loadDefinitions();
  if (view.cell && cellRes(view.cell) !== def.resolution) view.cell = null; // a link's cell of another resolution
  if (!minutes.length || !products.length) {
    waiting = true;
    drawLive();
    // Look again just after the first minute is due (at most every 2 s),
    // when that is sooner than the next refresh.
    const eta = firstClose ? firstClose.eta_seconds : null, ms = Math.max(2, eta + 1) * 1000;
    clearTimeout(early);
    if (eta !== null && ms < refreshMs) early = setTimeout(tick, ms);
    return false;
  }
  await chooseDefaults();
  syncControls();
  drawTimeline();
  await loadMap();
  started = true;
  document.body.dataset.ready = "1";
  return true;
}

async function tick() {
  try {
    if (!started) {
      if (starting) return; // the refresh and an early look at once
      starting = true;
      try { await start(); } finally { starting = false; }
      return;
    }
    if (playing) return;
    const before = minutes.length ? minutes[minutes.length - 1].minute : null;
    await Promise.all([loadMinutes(), loadProducts(), defName !== null && loadDefinitions()]);
    // A promotion (following the active one), or the chosen one is gone.
    if (defs && (view.definition || defs.active) !== defName) return void (await adoptDefinition());
    const after = minutes.length ? minutes[minutes.length - 1].minute : null;
    // A definition chosen before it had a minute: choose its view now.
    if (before === null && after !== null) return void (await adoptDefinition());
    drawTimeline();
    if (view.minute === null && after !== before) await loadMap();
    else if (view.minute !== null && minuteIndex() < 0) {
      setStatus(`minute ${view.minute} has expired from the store`, true);
    }
  } catch (e) {
    setStatus("error: " + e.message, true);
  }
}

function wire() {
  $("controls").addEventListener("submit", (ev) => ev.preventDefault());
  $("tokenform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token").value.trim();
    if (!t) return;
    setToken(t);
    $("token").value = "";
    $("tokenform").hidden = true;
    tick();
  });
  const onChange = (field, parse) => (ev) => {
    view[field] = parse(ev.target.value);
    loadMap();
  };
  $("definition").addEventListener("change", (ev) => {
    view.definition = ev.target.value || null;
    adoptDefinition().catch(showError);
  });
  $("product").addEventListener("change", onChange("product", String));
  $("k").addEventListener("change", onChange("k", Number));
  $("w").addEventListener("change", onChange("w", Number));
  $("scale").addEventListener("change", onChange("scale", String));
  $("slider").addEventListener("input", (ev) => { stopPlay(); goto(Number(ev.target.value)); });
  $("prev").addEventListener("click", () => { stopPlay(); goto(minuteIndex() - 1); });
  $("next").addEventListener("click", () => { stopPlay(); goto(minuteIndex() + 1); });
  $("play").addEventListener("click", togglePlay);
  $("live").addEventListener("click", () => { stopPlay(); view.minute = null; drawTimeline(); loadMap(); });
  $("spark").addEventListener("click", (ev) => {
    const r = $("spark").getBoundingClientRect();
    stopPlay();
    goto(Math.round(((ev.clientX - r.left) / r.width) * (minutes.length - 1)));
  });
  $("fit").addEventListener("click", () => { fit(); writeURL(); });
  $("zin").addEventListener("click", () => { const { W, H } = size(); zoomAt(2, W / 2, H / 2); writeURL(); });
  $("zout").addEventListener("click", () => { const { W, H } = size(); zoomAt(0.5, W / 2, H / 2); writeURL(); });
  $("top").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-h3]");
    if (tr) select(tr.dataset.h3);
  });
  $("detail").addEventListener("click", (ev) => {
    const td = ev.target.closest("td[data-k]");
    if (!td) return;
    view.k = Number(td.dataset.k);
    view.w = Number(td.dataset.w);
    syncControls();
    loadMap();
  });
  const map = $("map");
  let drag = null;
  map.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const r = map.getBoundingClientRect();
    zoomAt(Math.pow(2, -ev.deltaY / 300), ev.clientX - r.left, ev.clientY - r.top);
    clearTimeout(map.urlTimer);
    map.urlTimer = setTimeout(writeURL, 300);
  }, { passive: false });
  map.addEventListener("pointerdown", (ev) => {
    if (!view.at) return;
    drag = { x: ev.clientX, y: ev.clientY, at: view.at, moved: false };
    map.setPointerCapture(ev.pointerId);
  });
  map.addEventListener("pointermove", (ev) => {
    const tip = $("tip"), t = ev.target;
    if (drag) {
      const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (drag.moved) {
        map.classList.add("dragging");
        const s = pxPerDeg(drag.at.z) / 1000, [cx, cy] = toWorld(drag.at.lat, drag.at.lng);
        view.at = { ...fromWorld(cx - dx / s, cy - dy / s), z: drag.at.z };
        applyView();
        tip.hidden = true;
        return;
      }
    }
    if (t.dataset && t.dataset.h3 && data) {
      const r = $("mapbox").getBoundingClientRect();
      tip.hidden = false;
      tip.innerHTML = `<code>${t.dataset.h3}</code> <b>${t.dataset.v}</b> · k=${data.k} w=${data.w}`;
      tip.style.left = ev.clientX - r.left + 14 + "px";
      tip.style.top = ev.clientY - r.top + 12 + "px";
    } else tip.hidden = true;
  });
  map.addEventListener("pointerleave", () => { $("tip").hidden = true; });
  map.addEventListener("pointerup", (ev) => {
    const d = drag;
    drag = null;
    map.classList.remove("dragging");
    if (d && d.moved) return writeURL();
    const t = ev.target;
    select(t.dataset && t.dataset.h3 ? t.dataset.h3 : null);
  });
  // The map's box changes with the window and with the header's lines (the
  // latest minute's text may wrap): the view's centre and the tiles follow.
  new ResizeObserver(() => applyView()).observe(map);
  document.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "SELECT" || ev.target.tagName === "INPUT") return;
    if (ev.key === "ArrowLeft") { stopPlay(); goto(minuteIndex() - 1); }
    else if (ev.key === "ArrowRight") { stopPlay(); goto(minuteIndex() + 1); }
    else if (ev.key === " ") { ev.preventDefault(); togglePlay(); }
  });
}

async function main() {
  loadToken();
  Object.assign(view, parseView(location.search));
  if (basemap) {
    $("map").classList.add("basemap");
    $("attribution").textContent = attribution;
    $("attribution").hidden = false;
  }
  wire();
  await tick();
  setInterval(tick, refreshMs);
  setInterval(drawLive, 1000);
}

if (!window.DEMANDPIPE_NO_MAIN) main();
