// demandpipe page: draws the latest closed minute as an SVG hexagon heat
// map from GET /v1/map (cell boundaries come from the server), refreshing
// every data-refresh-ms. No libraries: the page must work offline.
"use strict";

const $ = (id) => document.getElementById(id);
const refreshMs = Number(document.body.dataset.refreshMs) || 10000;
const ramp = [[0x44, 0x01, 0x54], [0x3b, 0x52, 0x8b], [0x21, 0x91, 0x8c], [0x5e, 0xc9, 0x62], [0xfd, 0xe7, 0x25]];

function color(t) {
  t = Math.min(1, Math.max(0, t)) * (ramp.length - 1);
  const i = Math.min(ramp.length - 2, Math.floor(t)), f = t - i;
  const c = ramp[i].map((a, j) => Math.round(a + (ramp[i + 1][j] - a) * f));
  return "rgb(" + c.join(",") + ")";
}

async function getJSON(url) {
  const res = await fetch(url, { cache: "no-store" });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || res.status + " " + res.statusText);
  return body;
}

function fill(sel, values, keep) {
  const old = keep ? sel.value : null;
  sel.innerHTML = values.map((v) => `<option value="${v}">${v}</option>`).join("");
  if (old !== null && values.map(String).includes(old)) sel.value = old;
}

function setStatus(text, error) {
  const s = $("status");
  s.textContent = text;
  s.className = error ? "error" : "";
}

async function loadProducts() {
  const p = await getJSON("/v1/products");
  fill($("product"), p.products, true);
  return p.products.length;
}

function draw(d) {
  const svg = $("map");
  const cells = d.cells;
  if (cells.length === 0) {
    svg.innerHTML = "";
    svg.dataset.cells = "0";
    return;
  }
  let minLat = 90, maxLat = -90, minLng = 180, maxLng = -180;
  for (const c of cells) for (const [la, ln] of c[2]) {
    if (la < minLat) minLat = la;
    if (la > maxLat) maxLat = la;
    if (ln < minLng) minLng = ln;
    if (ln > maxLng) maxLng = ln;
  }
  // Equirectangular around the mean latitude: fine at city scale.
  const kx = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
  const w = Math.max((maxLng - minLng) * kx, 1e-9), h = Math.max(maxLat - minLat, 1e-9);
  const scale = Math.min(1000 / w, 700 / h) * 0.96;
  const ox = (1000 - w * scale) / 2, oy = (700 - h * scale) / 2;
  const max = d.max || 1;
  const parts = [];
  for (const [cell, v, b] of cells) {
    const pts = b.map(([la, ln]) => ((ln - minLng) * kx * scale + ox).toFixed(1) + "," + ((maxLat - la) * scale + oy).toFixed(1)).join(" ");
    parts.push(`<polygon points="${pts}" fill="${color(Math.sqrt(v / max))}" data-h3="${cell}" data-v="${v}"><title>${cell}: ${v}</title></polygon>`);
  }
  svg.innerHTML = parts.join("");
  svg.dataset.cells = String(cells.length);
}

async function refresh() {
  try {
    if ($("product").options.length === 0 && (await loadProducts()) === 0) {
      setStatus("waiting for the first closed minute…");
      return;
    }
    const q = new URLSearchParams({ product: $("product").value, k: $("k").value, w: $("w").value });
    const d = await getJSON("/v1/map?" + q);
    draw(d);
    $("lo").textContent = "0";
    $("hi").textContent = String(d.max);
    setStatus(`minute ${d.minute} (${Math.round(d.age_seconds)} s ago) · k=${d.k} w=${d.w} · ${d.cells.length} cells` + (d.truncated ? " (hottest only)" : ""));
  } catch (e) {
    setStatus("error: " + e.message, true);
  }
}

async function main() {
  try {
    const def = await getJSON("/v1/definition");
    fill($("k"), def.rings, false);
    fill($("w"), def.windows, false);
    // A useful default view: a mid-size ring over a few minutes.
    if (def.rings.includes(2)) $("k").value = "2";
    if (def.windows.includes(4)) $("w").value = "4";
  } catch (e) {
    setStatus("error: " + e.message, true);
    return;
  }
  for (const id of ["product", "k", "w"]) $(id).addEventListener("change", refresh);
  $("map").addEventListener("mouseover", (ev) => {
    const t = ev.target;
    if (t.dataset && t.dataset.h3) $("hover").textContent = t.dataset.h3 + " = " + t.dataset.v;
  });
  await refresh();
  setInterval(async () => {
    await loadProducts().catch(() => 0);
    refresh();
  }, refreshMs);
}

main();
