/*
 * The selection builder: keep, strategy, split and seed, previewed live (debounced) through
 * POST /v1/jobs/{id}/selections/preview and the distribution plot; "Create selection" stores it.
 * The strategies and defaults are the service's (selectionVocabulary).
 */

import { postJson, setImage } from "./api.js";
import { $, card, fmtInt, fmtPct, fmtScore, h, shortId, toast } from "./dom.js";
import { STRATEGY_LABELS } from "./vocabulary.js";

const PREVIEW_DEBOUNCE_MS = 250;

export function builderCard(ctx, job, summary, vocab, reloadSelections) {
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
    keep_ratio: Number(keep.value), strategy: strategy.value, split: Number(split.value),
    seed: Math.max(0, Math.floor(Number(seed.value) || 0)),
  });

  function outputs() {
    const b = body();
    keepOut.textContent = `${fmtPct(b.keep_ratio)} ≈ ${fmtInt(Math.floor(n * b.keep_ratio + 0.5))}`;
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
      const q = new URLSearchParams({ keep_ratio: b.keep_ratio, strategy: b.strategy, split: b.split,
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
