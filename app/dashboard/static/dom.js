/*
 * The dashboard's DOM helpers and formatting: building elements (h), cards, toasts, numbers,
 * times, sizes, status badges, progress bars and a job's parameters in a line.
 */

/** The job states after which nothing changes. */
export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

/** Create an element: h("a", {href: "#", class: "x", onclick: f}, "text", child, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "value") el.value = value;
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function card(title, sub, ...body) {
  return h("section", { class: "card" },
    h("header", {}, h("h2", {}, title), sub ? h("span", { class: "sub" }, sub) : null),
    ...body);
}

export function toast(message, kind = "info") {
  const el = h("div", { class: `toast ${kind}` }, message);
  $("#toasts").append(el);
  setTimeout(() => el.remove(), kind === "error" ? 6000 : 3500);
}

// ------------------------------------------------------------------------------------------
// Formatting

export const shortId = (id) => String(id).slice(0, 8);
export const fmtInt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
export const fmtScore = (x) => (x === null || x === undefined ? "–" : Number(x).toFixed(3));
export const fmtPct = (x, digits = 0) => `${(100 * x).toFixed(digits)}%`;

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString("en-GB", {
    day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
  return `${v.toFixed(u ? 1 : 0)} ${units[u]}`;
}

export const badge = (status) => h("span", { class: `badge ${status}` }, status);

export function progressBar(job) {
  const p = job.progress;
  const frac = job.status === "succeeded" ? 1 : p.fraction;
  const counts = p.total ? `${fmtInt(p.done)} / ${fmtInt(p.total)}` : "";
  return h("div", { class: "progress" },
    h("div", { class: `bar ${job.status}`, role: "progressbar", "aria-valuemin": 0,
      "aria-valuemax": 100, "aria-valuenow": Math.round(100 * frac) },
    h("span", { style: `width: ${(100 * frac).toFixed(1)}%` })),
    h("span", { class: "second" }, [p.stage, counts].filter(Boolean).join(" · ")));
}

/** A job's parameters in a line; the masking only when it is not the service's default
 * (vocab: jobVocabulary's answer). */
export function paramsText(params, vocab) {
  if (!params) return "";
  const parts = [];
  if (params.image_size) parts.push(`${params.image_size} px`);
  if (params.levels !== undefined) parts.push(`${params.levels} levels`);
  if (params.schedule) parts.push(params.schedule);
  if (params.masking && params.masking !== vocab.masking) parts.push(params.masking);
  return parts.join(" · ");
}
