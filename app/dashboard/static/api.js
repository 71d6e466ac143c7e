/*
 * The dashboard's access to the service's JSON API: every call sends "Authorization: Bearer
 * <key>" when a key is stored in localStorage, and a 401 asks for one (the key dialog). Polling,
 * API images shown through blob URLs, and downloads with the key's header live here too.
 */

import { h, $, toast } from "./dom.js";

/** How often lists and a running job are polled. */
export const POLL_MS = 1500;
const KEY_STORAGE = "dlcprune.apiKey";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const getKey = () => localStorage.getItem(KEY_STORAGE) || "";

function authHeaders(extra) {
  const headers = new Headers(extra || {});
  const key = getKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return headers;
}

async function errorFrom(resp) {
  let code = "error";
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    // RFC 9457 problem details: the stable code and the human detail.
    if (body && body.code) ({ code, detail: message } = body);
  } catch (_) { /* not JSON */ }
  if (resp.status === 401) {
    promptKey(getKey() ? "The stored API key was refused; enter another one."
      : "This service needs an API key.");
  }
  return new ApiError(resp.status, code, message);
}

/** fetch() a relative API path with the key; throws ApiError for non-2xx answers. */
export async function api(path, options = {}) {
  let resp;
  try {
    resp = await fetch(path, { ...options, headers: authHeaders(options.headers) });
  } catch (_) {
    throw new ApiError(0, "network_error", "the service cannot be reached");
  }
  if (!resp.ok) throw await errorFrom(resp);
  return resp;
}

export const apiJson = async (path, options) => (await api(path, options)).json();

export function postJson(path, body) {
  return apiJson(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** Upload a file as multipart form data, reporting progress (fetch cannot). */
export function uploadFile(file, name, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "v1/datasets");
    const key = getKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) { resolve(body); return; }
      if (xhr.status === 401) promptKey("This service needs an API key.");
      const err = body || {};
      reject(new ApiError(xhr.status, err.code || "error", err.detail || xhr.statusText));
    };
    xhr.onerror = () => reject(new ApiError(0, "network_error", "the upload failed"));
    const form = new FormData();
    form.append("file", file, file.name);
    if (name) form.append("name", name);
    xhr.send(form);
  });
}

/** Limit concurrent thumbnail/snippet requests so plots and polls are not starved. */
function limiter(max) {
  let active = 0;
  const waiting = [];
  const next = () => {
    if (active >= max || !waiting.length) return;
    active += 1;
    const { task, resolve, reject } = waiting.shift();
    task().then(resolve, reject).finally(() => { active -= 1; next(); });
  };
  return (task) => new Promise((resolve, reject) => { waiting.push({ task, resolve, reject }); next(); });
}
export const sampleQueue = limiter(6);

// ------------------------------------------------------------------------------------------
// The API key dialog

let keyPromptOpen = false;
let keyBefore = "";

function promptKey(message) {
  const dialog = $("#key-dialog");
  if (keyPromptOpen || !dialog) return;
  keyPromptOpen = true;
  keyBefore = getKey();
  $("#key-message").textContent = message;
  $("#key-input").value = getKey();
  dialog.showModal();
  $("#key-input").focus();
}

/** Wire the key dialog and its button; onNewKey runs when the stored key changed (the page
 * loads again with it). */
export function setupKeyDialog(onNewKey) {
  const dialog = $("#key-dialog");
  $("#key-form").addEventListener("submit", () => {
    const key = $("#key-input").value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    updateKeyButton();
  });
  $("#key-clear").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    $("#key-input").value = "";
    updateKeyButton();
    dialog.close();
  });
  dialog.addEventListener("close", () => {
    keyPromptOpen = false;
    // A new key: load the current page again with it.
    if (getKey() !== keyBefore) onNewKey();
  });
  $("#key-button").addEventListener("click", () => promptKey(
    getKey() ? "The key this page sends." : "No key stored: requests go without one."));
  updateKeyButton();
}

function updateKeyButton() {
  const key = getKey();
  $("#key-button").textContent = key ? `Key ${key.slice(0, 12)}…` : "API key";
}

/** Run fn now and every ms after it finishes, until it returns "stop" or the view ends. */
export function poll(ctx, fn, ms) {
  let handle = null;
  const tick = async () => {
    ctx.timers.delete(handle);
    if (!ctx.alive()) return;
    let result;
    try {
      result = await fn();
    } catch (err) {
      if (err.status !== 401 && ctx.alive()) console.warn("poll:", err.message);
    }
    if (result !== "stop" && ctx.alive()) {
      handle = setTimeout(tick, ms);
      ctx.timers.add(handle);
    }
  };
  tick();
}

/** Show an API image (plot or thumbnail) in img through a blob URL. */
export async function setImage(ctx, img, path) {
  img.classList.add("loading");
  try {
    const blob = await (await api(path)).blob();
    if (!ctx.alive()) return;
    const url = URL.createObjectURL(blob);
    ctx.urls.add(url);
    const old = img.dataset.blobUrl;
    img.src = url;
    img.dataset.blobUrl = url;
    if (old) { URL.revokeObjectURL(old); ctx.urls.delete(old); }
    img.classList.remove("loading");
    img.dataset.loaded = "true";
  } catch (err) {
    if (ctx.alive()) img.alt = `could not load: ${err.message}`;
  }
}

function filenameOf(resp) {
  const cd = resp.headers.get("Content-Disposition") || "";
  const m = cd.match(/filename\*?=(?:UTF-8'')?"?([^";]+)"?/i);
  return m ? decodeURIComponent(m[1]) : "download";
}

/** A download link: a plain link without a key; with one, a fetch with the header. */
export function downloadLink(text, path, cls) {
  const a = h("a", { href: path, class: cls, download: "" }, text);
  a.addEventListener("click", async (e) => {
    if (!getKey()) return;
    e.preventDefault();
    try {
      const resp = await api(path);
      const url = URL.createObjectURL(await resp.blob());
      const tmp = h("a", { href: url, download: filenameOf(resp) });
      document.body.append(tmp);
      tmp.click();
      tmp.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      toast(`Download failed: ${err.message}`, "error");
    }
  });
  return a;
}
