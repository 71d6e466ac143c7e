/*
 * dlcprune dashboard: a one-page app on the service's own JSON API (plain JavaScript modules, no
 * build step).
 *
 * Routes (in the URL's hash): "#/" lists datasets and jobs (home.js), "#/jobs/<id>" shows one job
 * (job.js, with the selection builder in builder.js). Lists are polled every 1.5 s; a job page
 * polls its job until it ends. API access, the key dialog and images through blob URLs are in
 * api.js; the vocabulary read from /openapi.json in vocabulary.js; DOM helpers in dom.js.
 */

import { setupKeyDialog } from "./api.js";
import { $, h, shortId } from "./dom.js";
import { renderHome } from "./home.js";
import { renderJob } from "./job.js";

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
    renderHome(ctx, main).catch((err) => {
      if (!ctx.alive()) return;
      main.append(h("div", { class: "card error-box" }, `Could not load the page: ${err.message}`));
    });
  }
  window.scrollTo(0, 0);
}

document.addEventListener("DOMContentLoaded", () => {
  setupKeyDialog(route);
  window.addEventListener("hashchange", route);
  route();
});
