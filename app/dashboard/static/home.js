/*
 * The home view: the datasets (upload, list, delete), the job form and the jobs list, polled
 * every POLL_MS. The job form's models, bounds and choices are the service's (jobVocabulary).
 */

import { api, apiJson, poll, POLL_MS, postJson, uploadFile } from "./api.js";
import {
  badge, card, fmtBytes, fmtDuration, fmtInt, fmtPct, fmtTime, h, paramsText, progressBar,
  shortId, TERMINAL, toast,
} from "./dom.js";
import { jobVocabulary, MASKING_LABELS } from "./vocabulary.js";

export async function renderHome(ctx, main) {
  const vocab = await jobVocabulary();
  if (!ctx.alive()) return;
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
    value: vocab.model, size: 20 });
  modelInput.addEventListener("input", () => { state.modelEdited = true; });
  const sizeInput = h("input", { type: "number", id: "job-image-size", min: vocab.imageSize.min,
    max: vocab.imageSize.max, placeholder: "default" });
  const levelsInput = h("input", { type: "number", id: "job-levels", min: vocab.levels.min,
    max: vocab.levels.max, placeholder: "default" });
  // Empty: the service's defaults for the data (geometric, 50 levels for labelled data).
  const scheduleSelect = h("select", { id: "job-schedule" },
    h("option", { value: "" }, "default"),
    vocab.schedules.map((v) => h("option", { value: v }, v)));
  const maskingSelect = h("select", { id: "job-masking" },
    vocab.maskings.map((v) => h("option", { value: v }, MASKING_LABELS[v] || v)));
  maskingSelect.value = vocab.masking;
  const jobStatus = h("div", { class: "form-status", id: "job-status" });
  const startButton = h("button", { type: "submit", id: "start-job" }, "Start scoring");
  dsSelect.addEventListener("change", () => suggestModel());
  const jobForm = h("form", { class: "inline", id: "job-form" },
    h("label", {}, "Dataset", dsSelect),
    h("label", {}, "Model", modelInput),
    h("datalist", { id: "model-names" }, vocab.models.map((m) => h("option", { value: m }))),
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
    modelInput.value = vocab.modelFor[ds.kind] || modelInput.value;
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
        h("td", {}, job.model, h("div", { class: "second" }, paramsText(job.params, vocab))),
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
