/*
 * The job page: its head (state, progress, facts, cancel), polled until the job ends; once it
 * succeeded, the score and loss plots, the gallery of the easiest and hardest samples, the
 * selection builder and the job's selections.
 */

import {
  api, apiJson, downloadLink, poll, POLL_MS, postJson, sampleQueue, setImage,
} from "./api.js";
import { builderCard } from "./builder.js";
import {
  card, fmtDuration, fmtInt, fmtPct, fmtScore, fmtTime, h, paramsText, progressBar, shortId,
  TERMINAL, toast,
} from "./dom.js";
import { jobVocabulary, selectionVocabulary } from "./vocabulary.js";

const GALLERY_K = 6;
const GALLERY_CLASSES = 10;

export function renderJob(ctx, main, jobId) {
  const head = h("section", { class: "card", id: "job-head" });
  const results = h("div", { id: "job-results", style: "display: grid; gap: 16px" });
  main.append(head, results);
  let dataset = null;
  let loaded = false;
  let vocab = null;

  poll(ctx, async () => {
    if (!vocab) vocab = await jobVocabulary();
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
    renderJobHead(head, job, dataset, vocab);
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

function renderJobHead(head, job, dataset, vocab) {
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
      job.status === "succeeded" ? downloadLink("Scores CSV", `v1/jobs/${job.id}/scores.csv`)
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
      fact("Parameters", paramsText(job.params, vocab) || "defaults"),
      fact(live ? "ETA" : "Finished", live ? fmtDuration(job.progress.eta_seconds)
        : fmtTime(job.finished_at)),
      fact("Timings", timings || "–"),
      fact("Unscored samples", fmtInt(job.unscored || 0))),
    job.error ? h("div", { class: "error-box" }, `${job.error.code}: ${job.error.message}`) : null,
  ].filter(Boolean));
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
  const evaluation = await evaluationCard(ctx, job, selections.reload);
  if (evaluation && ctx.alive()) root.append(evaluation);
}

// The latest succeeded evaluation: accuracy against keep per strategy, and its recommendation
// turned into a selection in one click.
async function evaluationCard(ctx, job, reloadSelections) {
  let list;
  try {
    list = await apiJson(`v1/jobs/${job.id}/evaluations?limit=20`);
  } catch (err) {
    return null;
  }
  const ev = list.items.find((e) => e.status === "succeeded");
  if (!ev) return null;
  const rec = ev.result.recommendation;
  const text = rec
    ? `recommended: ${rec.strategy} at keep ${rec.keep} (within ${rec.tolerance} of the full set)`
    : "no keep ratio stayed within the tolerance of the full set";
  const body = [plotFigure(ctx, "evaluation-img", `v1/evaluations/${ev.id}/plot`,
    "Held-out accuracy against keep ratio per strategy", text)];
  if (rec) {
    const button = h("button", { type: "button", id: "evaluation-select" },
      "Select the recommendation");
    button.addEventListener("click", async () => {
      try {
        await postJson(`v1/evaluations/${ev.id}/select`, {});
        toast("Selection stored from the recommendation.");
        reloadSelections();
      } catch (err) {
        toast(err.message, "error");
      }
    });
    body.push(button);
  }
  return card("Evaluation", `${ev.result.seeds} paired seeds; ${ev.probe}`, ...body);
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
      h("td", { class: "num" }, s.keep_count != null ? fmtInt(s.keep_count) : fmtPct(s.keep_ratio ?? s.keep)),
      h("td", { class: "num" }, `${fmtInt(s.size)} / ${fmtInt(s.num_samples)}`),
      h("td", {}, fmtTime(s.created_at)),
      h("td", {}, h("div", { class: "links" },
        downloadLink("Export", `v1/selections/${s.id}/export`, "export-link"),
        downloadLink("Items CSV", `v1/selections/${s.id}/items.csv`, "items-link"),
        downloadLink("Plot PNG", `v1/selections/${s.id}/plots/distribution.png`),
        downloadLink("SVG", `v1/selections/${s.id}/plots/distribution.svg`)))));
    }
  }

  reload().catch((err) => toast(`Could not list selections: ${err.message}`, "error"));
  return { el: card("Selections", "kept ids and the pruned dataset in its original format", table),
    reload };
}
