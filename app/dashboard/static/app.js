/*
 * dlcprune dashboard: a one-page app on the service's own JSON API (plain JavaScript, no build).
 *
 * Routes (in the URL's hash): "#/" lists datasets and jobs, "#/jobs/<id>" shows one job.
 * Lists are polled every 1.5 s; a job page polls its job until it ends. Every API call sends
 * "Authorization: Bearer <key>" when a key is stored in localStorage; a 401 asks for one.
 * Images (plots, thumbnails) are fetched with that header and shown through blob URLs.
 */
"use strict";

(() => {
  const POLL_MS = 1500;
  const PREVIEW_DEBOUNCE_MS = 250;
  const KEY_STORAGE = "dlcprune.apiKey";
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const GALLERY_K = 6;
  const GALLERY_CLASSES = 10;
  const DEFAULT_MODELS = { image: "efficientnet_lite0", text: "all-minilm-l6-v2" };
  // How the builder names each strategy; which strategies there are, and the defaults, come from
  // the service (selectionVocabulary), so a new one appears here under its own name.
  const STRATEGY_LABELS = {
    flexrand: "FlexRand (easy/hard mix)",
    easy: "Easiest first",
    hard: "Hardest first",
    random: "Random",
    stratified: "Stratified random",
    ccs: "Coverage-centric (CCS)",
  };

  // ------------------------------------------------------------------------------------------
  // DOM helpers

  /** Create an element: h("a", {href: "#", class: "x", onclick: f}, "text", child, ...). */
  function h(tag, attrs, ...children) {
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

  const $ = (selector, root = document) => root.querySelector(selector);

  function card(title, sub, ...body) {
    return h("section", { class: "card" },
      h("header", {}, h("h2", {}, title), sub ? h("span", { class: "sub" }, sub) : null),
      ...body);
  }

  function toast(message, kind = "info") {
    const el = h("div", { class: `toast ${kind}` }, message);
    $("#toasts").append(el);
    setTimeout(() => el.remove(), kind === "error" ? 6000 : 3500);
  }

  // ------------------------------------------------------------------------------------------
  // Formatting

  const shortId = (id) => String(id).slice(0, 8);
  const fmtInt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  const fmtScore = (x) => (x === null || x === undefined ? "–" : Number(x).toFixed(3));
  const fmtPct = (x, digits = 0) => `${(100 * x).toFixed(digits)}%`;

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${s % 60} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function fmtTime(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return d.toLocaleString("en-GB", {
      day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
  }

  function fmtBytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let v = n;
    let u = 0;
    while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
    return `${v.toFixed(u ? 1 : 0)} ${units[u]}`;
  }

  const badge = (status) => h("span", { class: `badge ${status}` }, status);

  function progressBar(job) {
    const p = job.progress;
    const frac = job.status === "succeeded" ? 1 : p.fraction;
    const counts = p.total ? `${fmtInt(p.done)} / ${fmtInt(p.total)}` : "";
    return h("div", { class: "progress" },
      h("div", { class: `bar ${job.status}`, role: "progressbar", "aria-valuemin": 0,
        "aria-valuemax": 100, "aria-valuenow": Math.round(100 * frac) },
      h("span", { style: `width: ${(100 * frac).toFixed(1)}%` })),
      h("span", { class: "second" }, [p.stage, counts].filter(Boolean).join(" · ")));
  }

  // ------------------------------------------------------------------------------------------
  // API access

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  const getKey = () => localStorage.getItem(KEY_STORAGE) || "";

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
      if (body && body.error) ({ code, message } = body.error);
    } catch (_) { /* not JSON */ }
    if (resp.status === 401) {
      promptKey(getKey() ? "The stored API key was refused; enter another one."
        : "This service needs an API key.");
    }
    return new ApiError(resp.status, code, message);
  }

  /** fetch() a relative API path with the key; throws ApiError for non-2xx answers. */
  async function api(path, options = {}) {
    let resp;
    try {
      resp = await fetch(path, { ...options, headers: authHeaders(options.headers) });
    } catch (_) {
      throw new ApiError(0, "network_error", "the service cannot be reached");
    }
    if (!resp.ok) throw await errorFrom(resp);
    return resp;
  }

  const apiJson = async (path, options) => (await api(path, options)).json();

  function postJson(path, body) {
    return apiJson(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  /** Upload a file as multipart form data, reporting progress (fetch cannot). */
  function uploadFile(file, name, onProgress) {
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
        const err = (body && body.error) || {};
        reject(new ApiError(xhr.status, err.code || "error", err.message || xhr.statusText));
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
  const sampleQueue = limiter(6);

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

  function setupKeyDialog() {
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
      if (getKey() !== keyBefore) route();
    });
    $("#key-button").addEventListener("click", () => promptKey(
      getKey() ? "The key this page sends." : "No key stored: requests go without one."));
    updateKeyButton();
  }

  function updateKeyButton() {
    const key = getKey();
    $("#key-button").textContent = key ? `Key ${key.slice(0, 12)}…` : "API key";
  }

  // ------------------------------------------------------------------------------------------
  // Views: each render gets a context; polls and late answers of an old view are dropped.

  let view = null;

  function newView() {
    if (view) view.dispose();
    const ctx = {
      timers: new Set(),
      urls: new Set(),
      disposed: false,
      alive: () => !ctx.disposed,
      dispose() {
        ctx.disposed = true;
        ctx.timers.forEach((t) => clearTimeout(t));
        ctx.urls.forEach((u) => URL.revokeObjectURL(u));
      },
    };
    view = ctx;
    return ctx;
  }

  /** Run fn now and every ms after it finishes, until it returns "stop" or the view ends. */
  function poll(ctx, fn, ms) {
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
  async function setImage(ctx, img, path) {
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
  function downloadLink(text, path, cls) {
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

  function route() {
    const match = (location.hash || "#/").match(/^#\/jobs\/([0-9a-fA-F-]{36})/);
    const main = $("#view");
    const ctx = newView();
    main.replaceChildren();
    const navJob = $("#nav-job");
    $("#nav-home").classList.toggle("active", !match);
    navJob.hidden = !match;
    if (match) {
      navJob.textContent = `Job ${shortId(match[1])}`;
      navJob.href = `#/jobs/${match[1]}`;
      navJob.classList.add("active");
      renderJob(ctx, main, match[1]);
    } else {
      renderHome(ctx, main);
    }
    window.scrollTo(0, 0);
  }

  // ------------------------------------------------------------------------------------------
  // Home: datasets, a job form and the jobs list

  function renderHome(ctx, main) {
    const state = { datasets: [], jobs: [], lastDatasets: "", lastJobs: "", modelEdited: false };

    // Upload
    const fileInput = h("input", { type: "file", id: "upload-file", required: true,
      accept: ".zip,.tar,.tar.gz,.tgz,.npz,.jsonl,.json" });
    const nameInput = h("input", { type: "text", id: "upload-name", placeholder: "optional" });
    const uploadStatus = h("div", { class: "form-status", id: "upload-status" });
    const uploadButton = h("button", { type: "submit", id: "upload-button" }, "Upload");
    const uploadForm = h("form", { class: "inline", id: "upload-form" },
      h("label", {}, "Data file", fileInput),
      h("label", {}, "Name", nameInput),
      uploadButton);
    uploadForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const file = fileInput.files[0];
      if (!file) return;
      uploadButton.disabled = true;
      uploadStatus.className = "form-status";
      uploadStatus.textContent = `Uploading ${file.name}…`;
      try {
        const ds = await uploadFile(file, nameInput.value.trim(), (f) => {
          uploadStatus.textContent = `Uploading ${file.name}… ${fmtPct(f)}`;
        });
        uploadStatus.textContent = ds.status === "invalid"
          ? `${ds.name}: invalid (${ds.error ? ds.error.message : "unreadable"})`
          : `${ds.name}: ${ds.status}, ${fmtInt(ds.num_samples)} samples`;
        if (ds.status === "invalid") uploadStatus.className = "form-status error";
        uploadForm.reset();
        state.pendingSelect = ds.status === "ready" ? ds.id : null;
        await refresh();
      } catch (err) {
        uploadStatus.className = "form-status error";
        uploadStatus.textContent = `Upload failed: ${err.message}`;
      } finally {
        uploadButton.disabled = false;
      }
    });

    const datasetsBody = h("tbody", {});
    const datasetsTable = h("table", { id: "datasets-table" },
      h("thead", {}, h("tr", {},
        h("th", {}, "Dataset"), h("th", {}, "Kind"), h("th", { class: "num" }, "Samples"),
        h("th", { class: "num" }, "Classes"), h("th", {}, "Status"), h("th", {}, "Added"),
        h("th", {}, ""))),
      datasetsBody);

    // New job
    const dsSelect = h("select", { id: "job-dataset", required: true });
    const modelInput = h("input", { type: "text", id: "job-model", list: "model-names",
      value: DEFAULT_MODELS.image, size: 20 });
    modelInput.addEventListener("input", () => { state.modelEdited = true; });
    const sizeInput = h("input", { type: "number", id: "job-image-size", min: 8, max: 1024,
      placeholder: "default" });
    const levelsInput = h("input", { type: "number", id: "job-levels", min: 0, max: 1000,
      placeholder: "default" });
    // Empty: the service's defaults for the data (linear, 10 levels for labelled data).
    const scheduleSelect = h("select", { id: "job-schedule" },
      h("option", { value: "" }, "default"), h("option", { value: "linear" }, "linear"),
      h("option", { value: "geometric" }, "geometric"));
    const maskingSelect = h("select", { id: "job-masking" },
      h("option", { value: "l1" }, "l1 (smallest first)"), h("option", { value: "random" }, "random"));
    const jobStatus = h("div", { class: "form-status", id: "job-status" });
    const startButton = h("button", { type: "submit", id: "start-job" }, "Start scoring");
    dsSelect.addEventListener("change", () => suggestModel());
    const jobForm = h("form", { class: "inline", id: "job-form" },
      h("label", {}, "Dataset", dsSelect),
      h("label", {}, "Model", modelInput),
      h("datalist", { id: "model-names" },
        h("option", { value: "efficientnet_lite0" }), h("option", { value: "all-minilm-l6-v2" })),
      h("label", {}, "Image size", sizeInput),
      h("label", {}, "Mask levels", levelsInput),
      h("label", {}, "Schedule", scheduleSelect),
      h("label", {}, "Masking", maskingSelect),
      startButton);
    jobForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!dsSelect.value) {
        jobStatus.className = "form-status error";
        jobStatus.textContent = "Upload a dataset first.";
        return;
      }
      const params = { masking: maskingSelect.value };
      if (scheduleSelect.value) params.schedule = scheduleSelect.value;
      if (sizeInput.value && !sizeInput.disabled) params.image_size = Number(sizeInput.value);
      if (levelsInput.value) params.levels = Number(levelsInput.value);
      startButton.disabled = true;
      jobStatus.className = "form-status";
      try {
        const job = await postJson("v1/jobs", {
          dataset_id: dsSelect.value, model: modelInput.value.trim(), params,
        });
        jobStatus.textContent = job.cached
          ? `Job ${shortId(job.id)}: answered from cached scores.`
          : `Job ${shortId(job.id)} queued.`;
        await refresh();
      } catch (err) {
        jobStatus.className = "form-status error";
        jobStatus.textContent = `Could not start: ${err.message}`;
      } finally {
        startButton.disabled = false;
      }
    });

    const jobsBody = h("tbody", {});
    const jobsTable = h("table", { id: "jobs-table" },
      h("thead", {}, h("tr", {},
        h("th", {}, "Job"), h("th", {}, "Dataset"), h("th", {}, "Model"), h("th", {}, "State"),
        h("th", {}, "Progress"), h("th", { class: "num" }, "ETA"), h("th", {}, "Created"),
        h("th", {}, ""))),
      jobsBody);

    main.append(
      card("Datasets", "zip/tar of class folders, .npz, or JSON lines",
        uploadForm, uploadStatus, datasetsTable),
      card("Score a dataset", "DLC: losses of a pre-trained model along a weight-masking path",
        jobForm, jobStatus),
      card("Jobs", "updated every 1.5 s", jobsTable),
    );

    function suggestModel() {
      const ds = state.datasets.find((d) => d.id === dsSelect.value);
      if (!ds || state.modelEdited) return;
      modelInput.value = DEFAULT_MODELS[ds.kind] || modelInput.value;
      sizeInput.disabled = ds.kind !== "image";
    }

    function renderDatasets() {
      const key = JSON.stringify(state.datasets);
      if (key === state.lastDatasets) return;
      state.lastDatasets = key;
      datasetsBody.replaceChildren();
      if (!state.datasets.length) {
        datasetsBody.append(h("tr", {}, h("td", { colspan: 7, class: "empty" },
          "No datasets yet: upload a zip of class folders (cat/001.png, dog/002.png, …).")));
      }
      for (const ds of state.datasets) {
        const classes = ds.classes ? Object.keys(ds.classes).length : null;
        datasetsBody.append(h("tr", { dataset: { datasetId: ds.id } },
          h("td", {}, h("div", {}, ds.name),
            h("div", { class: "second mono" }, `${shortId(ds.id)} · ${fmtBytes(ds.size_bytes)}`)),
          h("td", {}, [ds.kind, ds.format].filter(Boolean).join(" · ") || "–"),
          h("td", { class: "num" }, fmtInt(ds.num_samples)),
          h("td", { class: "num" }, classes === null ? "–" : classes || "unlabelled"),
          h("td", { title: ds.error ? ds.error.message : "" }, badge(ds.status),
            ds.error ? h("div", { class: "second" }, ds.error.code) : null),
          h("td", {}, fmtTime(ds.created_at)),
          h("td", {}, h("div", { class: "links" },
            ds.status === "ready" ? h("button", { type: "button", class: "small ghost",
              onclick: () => { dsSelect.value = ds.id; state.modelEdited = false; suggestModel();
                jobForm.scrollIntoView({ behavior: "smooth", block: "center" }); } }, "Score…")
              : null,
            h("button", { type: "button", class: "small danger", onclick: () => removeDataset(ds) },
              "Delete")))));
      }
      // The job form's dataset choice: ready datasets, keeping the current choice.
      const current = state.pendingSelect || dsSelect.value;
      state.pendingSelect = null;
      const ready = state.datasets.filter((d) => d.status === "ready");
      dsSelect.replaceChildren(...ready.map((d) => h("option", { value: d.id },
        `${d.name} (${fmtInt(d.num_samples)} ${d.kind || ""} samples)`)));
      if (ready.some((d) => d.id === current)) dsSelect.value = current;
      suggestModel();
    }

    async function removeDataset(ds) {
      if (!window.confirm(`Delete ${ds.name} with its jobs, scores and selections?`)) return;
      try {
        await api(`v1/datasets/${ds.id}`, { method: "DELETE" });
        toast(`Deleted ${ds.name}.`);
        await refresh();
      } catch (err) {
        toast(`Could not delete: ${err.message}`, "error");
      }
    }

    function renderJobs() {
      const key = JSON.stringify([state.jobs, state.datasets.map((d) => [d.id, d.name])]);
      if (key === state.lastJobs) return;
      state.lastJobs = key;
      jobsBody.replaceChildren();
      if (!state.jobs.length) {
        jobsBody.append(h("tr", {}, h("td", { colspan: 8, class: "empty" },
          "No jobs yet: pick a dataset above and start scoring.")));
      }
      const names = new Map(state.datasets.map((d) => [d.id, d.name]));
      for (const job of state.jobs) {
        const live = !TERMINAL.has(job.status);
        jobsBody.append(h("tr", { dataset: { jobId: job.id, status: job.status } },
          h("td", {}, h("a", { href: `#/jobs/${job.id}`, class: "mono job-link" }, shortId(job.id))),
          h("td", {}, names.get(job.dataset_id) || shortId(job.dataset_id)),
          h("td", {}, job.model, h("div", { class: "second" }, paramsText(job.params))),
          h("td", { class: "status-cell", title: job.error ? job.error.message : "" },
            h("span", { class: `badge status ${job.status}` }, job.status),
            job.cached ? h("div", { class: "second" }, "cached") : null),
          h("td", {}, progressBar(job)),
          h("td", { class: "num" }, live ? fmtDuration(job.progress.eta_seconds) : "–"),
          h("td", {}, fmtTime(job.created_at)),
          h("td", {}, live && !job.cancel_requested
            ? h("button", { type: "button", class: "small danger", onclick: () => cancelJob(job) },
              "Cancel")
            : h("a", { href: `#/jobs/${job.id}` }, "Open"))));
      }
    }

    async function cancelJob(job) {
      try {
        await api(`v1/jobs/${job.id}/cancel`, { method: "POST" });
        await refresh();
      } catch (err) {
        toast(`Could not cancel: ${err.message}`, "error");
      }
    }

    async function refresh() {
      // One after the other: on a fresh embedded service, two first requests at once race to
      // create the local tenant (app/auth.py), and one of them fails.
      const datasets = await apiJson("v1/datasets?limit=200");
      const jobs = await apiJson("v1/jobs?limit=100");
      if (!ctx.alive()) return;
      state.datasets = datasets.items;
      state.jobs = jobs.items;
      renderDatasets();
      renderJobs();
    }

    poll(ctx, refresh, POLL_MS);
  }

  function paramsText(params) {
    if (!params) return "";
    const parts = [];
    if (params.image_size) parts.push(`${params.image_size} px`);
    if (params.levels !== undefined) parts.push(`${params.levels} levels`);
    if (params.schedule) parts.push(params.schedule);
    if (params.masking && params.masking !== "l1") parts.push(params.masking);
    return parts.join(" · ");
  }

  // ------------------------------------------------------------------------------------------
  // Job page

  function renderJob(ctx, main, jobId) {
    const head = h("section", { class: "card", id: "job-head" });
    const results = h("div", { id: "job-results", style: "display: grid; gap: 16px" });
    main.append(head, results);
    let dataset = null;
    let loaded = false;

    poll(ctx, async () => {
      let job;
      try {
        job = await apiJson(`v1/jobs/${jobId}`);
      } catch (err) {
        if (err.status === 404) {
          head.replaceChildren(h("h2", {}, "Job not found"),
            h("p", {}, "No such job for this key. ", h("a", { href: "#/" }, "Back to the list")));
          return "stop";
        }
        throw err;
      }
      if (!dataset) dataset = await apiJson(`v1/datasets/${job.dataset_id}`);
      if (!ctx.alive()) return "stop";
      renderJobHead(head, job, dataset);
      if (job.status === "succeeded" && !loaded) {
        loaded = true;
        try {
          await renderResults(ctx, results, job, dataset);
        } catch (err) {
          results.append(h("div", { class: "card error-box" },
            `Could not load the results: ${err.message}`));
        }
      }
      return TERMINAL.has(job.status) ? "stop" : null;
    }, POLL_MS);
  }

  function renderJobHead(head, job, dataset) {
    const live = !TERMINAL.has(job.status);
    const timings = Object.entries(job.timings || {})
      .map(([k, v]) => `${k.replace(/_s$/, "")} ${fmtDuration(v)}`).join(", ");
    const fact = (k, v) => h("div", { class: "fact" }, h("span", { class: "k" }, k),
      h("span", { class: "v" }, v));
    head.replaceChildren(...[
      h("header", {},
        h("h2", {}, `Job ${shortId(job.id)}`),
        h("span", { class: `badge status ${job.status}`, id: "job-state" }, job.status),
        job.cached ? h("span", { class: "sub" }, "answered from cached scores") : null,
        h("span", { class: "spacer" }),
        job.status === "succeeded" ? downloadLink("Scores CSV", `v1/jobs/${job.id}/scores?format=csv`)
          : null,
        live && !job.cancel_requested ? h("button", { type: "button", class: "small danger",
          onclick: async () => {
            try { await api(`v1/jobs/${job.id}/cancel`, { method: "POST" }); } catch (err) {
              toast(`Could not cancel: ${err.message}`, "error");
            }
          } }, "Cancel") : null),
      progressBar(job),
      h("div", { class: "facts" },
        fact("Dataset", `${dataset.name} (${fmtInt(dataset.num_samples)} ${dataset.kind || ""})`),
        fact("Model", job.model),
        fact("Parameters", paramsText(job.params) || "defaults"),
        fact(live ? "ETA" : "Finished", live ? fmtDuration(job.progress.eta_seconds)
          : fmtTime(job.finished_at)),
        fact("Timings", timings || "–"),
        fact("Unscored samples", fmtInt(job.unscored || 0))),
      job.error ? h("div", { class: "error-box" }, `${job.error.code}: ${job.error.message}`) : null,
    ].filter(Boolean));
  }

  let vocabulary = null;

  /** The strategy names and the selection defaults, as the service's OpenAPI document states
   * them (they are defined once, in dlcprune.names); read once per page. */
  async function selectionVocabulary() {
    if (!vocabulary) {
      const doc = await (await fetch("openapi.json")).json();
      const props = doc.components.schemas.SelectionCreate.properties;
      vocabulary = {
        strategies: props.strategy.enum,
        strategy: props.strategy.default,
        split: props.split.default,
      };
    }
    return vocabulary;
  }

  async function renderResults(ctx, root, job, dataset) {
    const [summary, vocab] = await Promise.all([
      apiJson(`v1/jobs/${job.id}/summary?bins=30&k=${GALLERY_K}`),
      selectionVocabulary(),
    ]);
    if (!ctx.alive()) return;
    root.append(
      h("div", { class: "grid-2" }, histogramCard(ctx, job, summary), lossCard(ctx, job, summary)),
      galleryCard(ctx, dataset, summary),
    );
    const selections = selectionsCard(ctx, job);
    root.append(builderCard(ctx, job, summary, vocab, selections.reload), selections.el);
  }

  function plotFigure(ctx, id, path, alt, caption) {
    const img = h("img", { id, alt, class: "loading" });
    setImage(ctx, img, `${path}.svg`);
    return h("figure", { class: "plot" }, img,
      h("figcaption", {}, h("span", {}, caption),
        h("span", { class: "links" }, downloadLink("PNG", `${path}.png`),
          downloadLink("SVG", `${path}.svg`))));
  }

  function histogramCard(ctx, job, summary) {
    const s = summary.score_stats;
    const sub = s ? `min ${fmtScore(s.min)} · median ${fmtScore(s.median)} · max ${fmtScore(s.max)}`
      : "no scores";
    return card("DLC scores", sub,
      plotFigure(ctx, "histogram-img", `v1/jobs/${job.id}/plots/histogram`,
        "Histogram of DLC scores per class",
        `${fmtInt(summary.scored)} scored samples${summary.classes_total
          ? `, ${summary.classes_total} classes` : ""}`));
  }

  function lossCard(ctx, job, summary) {
    const curve = summary.loss_curve;
    if (!curve) {
      return card("Loss vs mask level", "", h("p", { class: "empty" },
        "This job stored no per-level losses."));
    }
    return card("Loss vs mask level", `${curve.levels} rows, row 0 unmasked`,
      plotFigure(ctx, "loss-img", `v1/jobs/${job.id}/plots/loss-curve`,
        "Mean loss against the share of weights masked",
        `mean, median and ${curve.band.low}–${curve.band.high}% band over ${fmtInt(curve.samples)} samples`));
  }

  // Gallery -----------------------------------------------------------------------------------

  function galleryCard(ctx, dataset, summary) {
    const kind = summary.kind;
    const rows = h("div", { class: "gallery", id: "gallery" },
      h("div", { class: "gallery-head" }, h("span", {}, "Class"),
        h("span", {}, `Easiest ${summary.k} (lowest scores)`),
        h("span", {}, `Hardest ${summary.k} (highest scores)`)));
    const groups = summary.extremes;
    const addRows = (list) => {
      for (const g of list) {
        rows.append(h("div", { class: "gallery-row" },
          h("div", { class: "gallery-label" }, g.label === null ? "all samples" : g.label,
            h("span", { class: "second" }, `${fmtInt(g.count)} samples`)),
          tiles(ctx, dataset, kind, g.easiest),
          tiles(ctx, dataset, kind, g.hardest)));
      }
    };
    addRows(groups.slice(0, GALLERY_CLASSES));
    const body = [rows];
    if (groups.length > GALLERY_CLASSES) {
      const more = h("button", { type: "button", class: "ghost small more" },
        `Show ${groups.length - GALLERY_CLASSES} more classes`);
      more.addEventListener("click", () => { addRows(groups.slice(GALLERY_CLASSES)); more.remove(); });
      body.push(more);
    }
    if (summary.classes_total > summary.classes_shown) {
      body.push(h("p", { class: "hint" },
        `The first ${summary.classes_shown} of ${summary.classes_total} classes are shown.`));
    }
    return card("Easiest and hardest samples", "per class, by DLC score", ...body);
  }

  function tiles(ctx, dataset, kind, samples) {
    const textual = kind === "text" || kind === "instruction";
    const box = h("div", { class: `tiles${textual ? " text" : ""}` });
    for (const s of samples) {
      const caption = h("figcaption", {}, fmtScore(s.score));
      const title = `${s.sample_id}\nscore ${fmtScore(s.score)}`;
      if (kind === "image") {
        const img = h("img", { class: "thumb", alt: s.sample_id, width: 72, height: 72 });
        sampleQueue(() => setImage(ctx, img,
          `v1/datasets/${dataset.id}/samples/${s.index}/thumbnail`));
        box.append(h("figure", { class: "tile", title }, img, caption));
      } else if (textual) {
        const text = h("div", { class: "snippet" }, "…");
        sampleQueue(async () => {
          if (!ctx.alive()) return;
          try {
            const sample = await apiJson(`v1/datasets/${dataset.id}/samples/${s.index}`);
            text.textContent = sample.snippet || "(empty)";
            text.title = sample.snippet || "";
          } catch (err) {
            text.textContent = `(${err.message})`;
          }
        });
        box.append(h("figure", { class: "tile", title }, text,
          h("figcaption", {}, `${s.sample_id} · ${fmtScore(s.score)}`)));
      } else {
        box.append(h("figure", { class: "tile", title },
          h("div", { class: "snippet mono" }, s.sample_id), caption));
      }
    }
    if (!samples.length) box.append(h("span", { class: "empty" }, "none"));
    return box;
  }

  // Selection builder --------------------------------------------------------------------------

  function builderCard(ctx, job, summary, vocab, reloadSelections) {
    const n = summary.num_samples;
    const keep = h("input", { type: "range", id: "keep", min: 0.01, max: 1, step: 0.01, value: 0.3 });
    const keepOut = h("output", { id: "keep-out" });
    const strategy = h("select", { id: "strategy" },
      vocab.strategies.map((v) => h("option", { value: v }, STRATEGY_LABELS[v] || v)));
    strategy.value = vocab.strategy;
    const split = h("input", { type: "range", id: "split", min: 0, max: 1, step: 0.05,
      value: vocab.split });
    const splitOut = h("output", { id: "split-out" });
    const seed = h("input", { type: "number", id: "seed", min: 0, step: 1, value: 0 });
    const create = h("button", { type: "button", id: "create-selection", disabled: true },
      "Create selection");

    const stat = (id, k) => h("div", { class: "stat" }, h("div", { class: "k" }, k),
      h("div", { class: "v", id }, "–"));
    const stats = h("div", { class: "stats" },
      stat("preview-size", "Kept"), stat("preview-ks", "KS statistic D"),
      stat("preview-tv", "Class TV distance"), stat("preview-mean", "Mean score kept / full"));
    const error = h("div", { class: "preview-error", id: "preview-error" });
    const classBody = h("tbody", {});
    const classTable = h("table", { class: "class-bars", id: "preview-classes" },
      h("thead", {}, h("tr", {}, h("th", {}, "Class"), h("th", { class: "num" }, "Full"),
        h("th", { class: "num" }, "Kept"), h("th", {}, "Share full / kept"))),
      classBody);
    const plot = h("img", { id: "preview-plot", alt: "Score distribution: kept vs full",
      class: "loading" });
    const previewWrap = h("div", { class: "preview-wrap", id: "preview" }, stats, error,
      h("div", { class: "preview-grid" }, h("figure", { class: "plot" }, plot,
        h("figcaption", {}, h("span", {}, "score densities, kept vs full, on the same bins"))),
      h("div", {}, classTable)));

    const body = () => ({
      keep: Number(keep.value), strategy: strategy.value, split: Number(split.value),
      seed: Math.max(0, Math.floor(Number(seed.value) || 0)),
    });

    function outputs() {
      const b = body();
      keepOut.textContent = `${fmtPct(b.keep)} ≈ ${fmtInt(Math.floor(n * b.keep + 0.5))}`;
      splitOut.textContent = `${fmtPct(b.split)} easy pool`;
      split.disabled = b.strategy !== "flexrand";
    }

    let seq = 0;
    let timer = null;
    let lastPreview = null;

    async function preview() {
      const mine = ++seq;
      const b = body();
      previewWrap.classList.add("stale");
      create.disabled = true;
      try {
        const p = await postJson(`v1/jobs/${job.id}/selections/preview`, b);
        if (mine !== seq || !ctx.alive()) return;
        lastPreview = p;
        error.textContent = "";
        $("#preview-size", stats).replaceChildren(fmtInt(p.size),
          h("small", {}, ` of ${fmtInt(p.num_samples)}`));
        $("#preview-ks", stats).textContent = p.ks_statistic.toFixed(3);
        $("#preview-tv", stats).textContent = p.tv_distance === null ? "–"
          : p.tv_distance.toFixed(3);
        $("#preview-mean", stats).replaceChildren(fmtScore(p.mean_score.kept),
          h("small", {}, ` / ${fmtScore(p.mean_score.full)}`));
        renderClasses(p);
        const q = new URLSearchParams({ keep: b.keep, strategy: b.strategy, split: b.split,
          seed: b.seed });
        setImage(ctx, plot, `v1/jobs/${job.id}/plots/distribution.svg?${q}`);
        create.disabled = false;
        previewWrap.classList.remove("stale");
      } catch (err) {
        if (mine !== seq || !ctx.alive()) return;
        lastPreview = null;
        error.textContent = err.message;
        previewWrap.classList.remove("stale");
      }
    }

    function renderClasses(p) {
      classBody.replaceChildren();
      const fullTotal = p.classes.reduce((a, c) => a + c.full, 0) || 1;
      const keptTotal = p.classes.reduce((a, c) => a + c.kept, 0) || 1;
      for (const c of p.classes.slice(0, 30)) {
        const fs = c.full / fullTotal;
        const ks = c.kept / keptTotal;
        classBody.append(h("tr", {},
          h("td", {}, c.label), h("td", { class: "num" }, fmtInt(c.full)),
          h("td", { class: "num" }, fmtInt(c.kept)),
          h("td", {}, h("div", { class: "pair", title: `${fmtPct(fs, 1)} / ${fmtPct(ks, 1)}` },
            h("div", { class: "bar full" }, h("span", { style: `width: ${(100 * fs).toFixed(1)}%` })),
            h("div", { class: "bar" }, h("span", { style: `width: ${(100 * ks).toFixed(1)}%` }))))));
      }
      if (!p.classes.length) {
        classBody.append(h("tr", {}, h("td", { colspan: 4, class: "empty" }, "unlabelled data")));
      } else if (p.classes.length > 30) {
        classBody.append(h("tr", {}, h("td", { colspan: 4, class: "empty" },
          `and ${p.classes.length - 30} more classes`)));
      }
    }

    const changed = () => {
      outputs();
      previewWrap.classList.add("stale");
      create.disabled = true;
      clearTimeout(timer);
      ctx.timers.delete(timer);
      timer = setTimeout(preview, PREVIEW_DEBOUNCE_MS);
      ctx.timers.add(timer);
    };
    for (const el of [keep, strategy, split, seed]) {
      el.addEventListener("input", changed);
      el.addEventListener("change", changed);
    }

    create.addEventListener("click", async () => {
      if (!lastPreview) return;
      create.disabled = true;
      try {
        const sel = await postJson(`v1/jobs/${job.id}/selections`, body());
        toast(`Selection ${shortId(sel.id)} created: ${fmtInt(sel.size)} samples.`);
        await reloadSelections(sel.id);
      } catch (err) {
        toast(`Could not create the selection: ${err.message}`, "error");
      } finally {
        create.disabled = false;
      }
    });

    outputs();
    preview();
    const section = card("Build a selection", "previewed live; nothing is stored until you create it",
      h("div", { class: "builder" },
        h("div", { class: "controls" },
          h("label", {}, "Keep", keepOut, keep),
          h("label", {}, "Strategy", strategy),
          h("label", {}, "FlexRand split", splitOut, split),
          h("label", {}, "Seed", seed),
          create,
          h("p", { class: "hint" },
            "KS D: largest gap between the kept and full score distributions (0 = same). ",
            "TV distance: half the summed difference of class proportions.")),
        previewWrap));
    section.id = "builder";
    return section;
  }

  // Selections list ----------------------------------------------------------------------------

  function selectionsCard(ctx, job) {
    const tbody = h("tbody", {});
    const table = h("table", { id: "selections-table" },
      h("thead", {}, h("tr", {},
        h("th", {}, "Selection"), h("th", {}, "Strategy"), h("th", { class: "num" }, "Keep"),
        h("th", { class: "num" }, "Size"), h("th", {}, "Created"), h("th", {}, "Download"))),
      tbody);

    async function reload(freshId) {
      const page = await apiJson(`v1/jobs/${job.id}/selections?limit=100`);
      if (!ctx.alive()) return;
      tbody.replaceChildren();
      if (!page.items.length) {
        tbody.append(h("tr", {}, h("td", { colspan: 6, class: "empty" },
          "No selections yet: build one above.")));
      }
      for (const s of page.items) {
        const strategyText = s.strategy === "flexrand"
          ? `flexrand, split ${s.split}, seed ${s.seed}` : `${s.strategy}, seed ${s.seed}`;
        tbody.append(h("tr", { class: s.id === freshId ? "fresh" : "",
          dataset: { selectionId: s.id, size: s.size } },
        h("td", { class: "mono" }, shortId(s.id)),
        h("td", {}, strategyText),
        h("td", { class: "num" }, s.keep <= 1 ? fmtPct(s.keep) : fmtInt(s.keep)),
        h("td", { class: "num" }, `${fmtInt(s.size)} / ${fmtInt(s.num_samples)}`),
        h("td", {}, fmtTime(s.created_at)),
        h("td", {}, h("div", { class: "links" },
          downloadLink("Export", `v1/selections/${s.id}/export`, "export-link"),
          downloadLink("Items CSV", `v1/selections/${s.id}/items?format=csv`, "items-link"),
          downloadLink("Plot PNG", `v1/selections/${s.id}/plots/distribution.png`),
          downloadLink("SVG", `v1/selections/${s.id}/plots/distribution.svg`)))));
      }
    }

    reload().catch((err) => toast(`Could not list selections: ${err.message}`, "error"));
    return { el: card("Selections", "kept ids and the pruned dataset in its original format", table),
      reload };
  }

  // ------------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    setupKeyDialog();
    window.addEventListener("hashchange", route);
    route();
  });
})();
