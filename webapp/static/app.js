/* LexiMind pages: upload with drag and drop, live job and training progress. No inline scripts (CSP). */
"use strict";

document.documentElement.classList.add("js");

const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function fileSize(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB"];
  let value = n;
  for (const unit of units) {
    value /= 1024;
    if (value < 1024 || unit === "GB") return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${unit}`;
  }
  return `${n} B`;
}

function duration(seconds) {
  if (seconds == null) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return m < 10 ? `${m} min ${String(s % 60).padStart(2, "0")} s` : `${m} min`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

const STATE_WORDS = {
  uploaded: "Waiting to be read", extracting: "Reading", queued: "In the queue", processing: "Processing",
  done: "Done", partial: "Done, some failed", failed: "Failed", running: "Running", succeeded: "Succeeded", cancelled: "Cancelled",
};

function badge(state) {
  return el("span", { class: `badge state-${state}`, "data-state": state, text: STATE_WORDS[state] || state });
}

/* Poll a JSON URL until `handle` returns true (finished); slows down after errors. */
function poll(url, handle, interval = 1500) {
  let delay = interval;
  const tick = async () => {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.status === 401) { window.location.reload(); return; }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      if (handle(await response.json())) return;
      delay = interval;
    } catch (error) {
      delay = Math.min(delay * 2, 30000);
    }
    window.setTimeout(tick, document.hidden ? Math.max(delay, 5000) : delay);
  };
  window.setTimeout(tick, interval);
}

/* ---------------------------------------------------------------- upload page */
function setupUpload(form) {
  const input = form.querySelector("#file-input");
  const zone = form.querySelector("#dropzone");
  const table = form.querySelector("#file-table");
  const rows = form.querySelector("#file-rows");
  const summary = form.querySelector("#upload-summary");
  const button = form.querySelector("#upload-button");
  const clear = form.querySelector("#clear-files");
  const errorBox = form.querySelector("#upload-error");
  const progressBox = form.querySelector("#upload-progress");
  const progressBar = form.querySelector("#upload-progress-bar");
  const progressText = form.querySelector("#upload-progress-text");
  const maxBytes = Number(form.dataset.maxBytes);
  const maxFiles = Number(form.dataset.maxFiles);
  const extensions = form.dataset.extensions.split(",");
  let files = [];

  const problemOf = (file) => {
    const dot = file.name.lastIndexOf(".");
    const ext = dot > 0 ? file.name.slice(dot).toLowerCase() : "";
    if (ext && !extensions.includes(ext)) return `${ext} files are not supported`;
    if (file.size === 0) return "The file is empty";
    if (file.size > maxBytes) return `Larger than the ${fileSize(maxBytes)} limit`;
    return null;
  };

  const render = (serverProblems = {}) => {
    rows.replaceChildren();
    files.forEach((file, index) => {
      const problem = serverProblems[file.name] || problemOf(file);
      const status = el("span", { class: `file-status ${problem ? "bad" : "ok"}`, text: problem || "Ready" });
      const remove = el("button", { type: "button", class: "button small ghost", "aria-label": `Remove ${file.name}`, text: "Remove" });
      remove.addEventListener("click", () => { files.splice(index, 1); render(); });
      rows.append(el("tr", {}, el("td", { class: "file-name", text: file.name }), el("td", { class: "num", text: fileSize(file.size) }),
        el("td", {}, status), el("td", { class: "num" }, remove)));
    });
    const total = files.reduce((sum, f) => sum + f.size, 0);
    const bad = files.filter((f) => serverProblems[f.name] || problemOf(f)).length;
    table.hidden = files.length === 0;
    clear.hidden = files.length === 0;
    let message = files.length ? `${files.length} file${files.length === 1 ? "" : "s"}, ${fileSize(total)}` : "No files chosen yet.";
    let blocked = files.length === 0 || bad > 0;
    if (bad) message += ` — remove the ${bad} file${bad === 1 ? "" : "s"} marked in red to upload`;
    if (files.length > maxFiles) { message += ` — at most ${maxFiles} files per upload`; blocked = true; }
    if (total > maxBytes) { message += ` — over the ${fileSize(maxBytes)} limit per upload; split it`; blocked = true; }
    summary.textContent = message;
    button.disabled = blocked;
    button.textContent = files.length ? `Upload ${files.length} file${files.length === 1 ? "" : "s"}` : "Upload";
  };

  const add = (list) => {
    const known = new Set(files.map((f) => `${f.name}:${f.size}`));
    for (const file of list) if (!known.has(`${file.name}:${file.size}`)) files.push(file);
    errorBox.hidden = true;
    render();
  };

  input.addEventListener("change", () => { add(input.files); input.value = ""; });
  clear.addEventListener("click", () => { files = []; render(); });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.remove("dragging"); });
  }
  zone.addEventListener("drop", (event) => add(event.dataTransfer.files));

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!files.length) { summary.textContent = "Choose or drop at least one file first."; return; }
    const data = new FormData();
    data.append("csrf_token", csrfToken());
    files.forEach((file) => data.append("files", file, file.name));
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    request.setRequestHeader("X-CSRFToken", csrfToken());
    button.disabled = true;
    progressBox.hidden = false;
    request.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      const pct = (100 * e.loaded) / e.total;
      progressBar.setAttribute("width", pct.toFixed(1));
      progressText.textContent = pct < 100 ? `Uploading… ${Math.round(pct)}%` : "Storing…";
    });
    request.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(request.responseText); } catch (e) { /* a page, not JSON */ }
      if (request.status >= 200 && request.status < 300 && body.job_url) {
        progressText.textContent = "Uploaded. Opening the job…";
        window.location.assign(body.job_url);
        return;
      }
      progressBox.hidden = true;
      const error = body.error || {};
      // a session that ended meanwhile answers with the sign-in page (followed redirect, 200), or a 401
      const signedOut = request.status === 401 || new URL(request.responseURL || form.action).pathname === "/login";
      if (signedOut) {
        const login = el("a", { href: `/login?next=${encodeURIComponent(window.location.pathname)}`, text: "Sign in again" });
        errorBox.replaceChildren("You are signed out, so nothing was uploaded. ", login, ", then choose the files again.");
      } else {
        errorBox.textContent = error.message || `The upload failed (HTTP ${request.status}). Try again.`;
      }
      errorBox.hidden = false;
      const perFile = {};
      for (const item of error.details?.files || []) perFile[item.filename] = item.error;
      render(perFile);
    });
    request.addEventListener("error", () => {
      progressBox.hidden = true;
      errorBox.textContent = "The connection dropped during the upload. Check your network and try again.";
      errorBox.hidden = false;
      button.disabled = false;
    });
    request.send(data);
  });
  render();
}

/* ---------------------------------------------------------------- job page */
function setupJob(section) {
  if (section.dataset.finished === "true") return;
  const docUrl = (id) => section.dataset.documentUrl.replace(/0$/, String(id));
  const set = (id, text) => { const node = document.getElementById(id); if (node) node.textContent = text; };
  poll(section.dataset.pollUrl, (job) => {
    const { total, done, failed, in_progress: inProgress } = job.progress;
    const d = total ? (100 * done) / total : 0;
    const f = total ? (100 * failed) / total : 0;
    document.getElementById("bar-done").setAttribute("width", d.toFixed(2));
    const barFailed = document.getElementById("bar-failed");
    barFailed.setAttribute("x", d.toFixed(2));
    barFailed.setAttribute("width", f.toFixed(2));
    set("stat-done", done);
    set("stat-failed", failed);
    set("stat-progress", inProgress);
    set("stat-queue", job.queue_position ?? "—");
    const finished = ["done", "partial", "failed"].includes(job.state);
    set("stat-eta", finished ? "finished" : job.waiting_for_model ? "waits for the model"
      : job.eta_seconds != null ? `about ${duration(job.eta_seconds)}` : "measuring…");
    document.getElementById("job-state").replaceChildren(badge(job.state));
    const rows = document.getElementById("job-documents");
    for (const doc of job.documents) {
      const row = rows.querySelector(`tr[data-id="${doc.id}"]`);
      if (!row || row.dataset.state === doc.state) continue;
      row.dataset.state = doc.state;
      row.querySelector(".doc-state").replaceChildren(badge(doc.state));
      const detail = row.querySelector(".doc-detail");
      if (doc.state === "failed") detail.replaceChildren(el("span", { class: "error-text", text: doc.error?.message || "Processing failed." }));
      else if (doc.state === "done") detail.replaceChildren(el("a", { href: docUrl(doc.id), text: "View result →" }));
      else detail.replaceChildren(el("span", { class: "muted", text: `${STATE_WORDS[doc.state] || doc.state}…` }));
    }
    if (finished) set("job-note", failed ? `Finished: ${done} done, ${failed} failed. Each failed document says why in the list below.` : "All documents are done.");
    return finished;
  });
}

/* ---------------------------------------------------------------- training progress */
function setupRun(section) {
  const url = section.dataset.pollUrl;
  if (!url) return;
  const chartUrl = section.dataset.chartUrl;
  const chart = document.getElementById("loss-chart");
  let points = -1;
  const field = (name) => section.querySelectorAll(`[data-field="${name}"]`);
  poll(url, (run) => {
    const p = run.progress || {};
    const set = (name, text) => field(name).forEach((node) => { node.textContent = text; });
    set("step", p.step != null ? (p.total_steps ? `${p.step} / ${p.total_steps}` : String(p.step)) : "—");
    set("epoch", typeof p.epoch === "number" ? String(Number(p.epoch.toPrecision(2))) : "—");
    set("loss", typeof p.loss === "number" ? p.loss.toFixed(4) : "—");
    set("eta", typeof p.eta_s === "number" ? duration(p.eta_s) : "—");
    set("phase", p.phase || (run.state === "queued" ? "waiting for a worker" : "—"));
    if (typeof p.step === "number" && p.total_steps) {
      field("bar").forEach((node) => node.setAttribute("width", ((100 * p.step) / p.total_steps).toFixed(2)));
    }
    document.querySelectorAll('[data-field="state"]').forEach((node) => node.replaceChildren(badge(run.state)));
    const history = run.history || [];
    if (chart && chartUrl && history.length !== points) {
      points = history.length;
      fetch(chartUrl, { credentials: "same-origin" }).then((r) => (r.ok ? r.text() : null)).then((html) => {
        if (html) chart.innerHTML = html;
      }).catch(() => {});
    }
    const finished = !["queued", "running"].includes(run.state);
    if (finished) window.setTimeout(() => window.location.reload(), 800);
    return finished;
  }, 2000);
}

/* ---------------------------------------------------------------- "no model yet" banner */
function setupModelBanner(banner) {
  poll(banner.dataset.pollUrl, ({ status }) => {
    if (status.state === "ready") {
      banner.hidden = true;
      // the top bar's chip said "No model yet" until the next page load, under a banner that had gone
      const chip = document.querySelector(".model-chip");
      if (chip) {
        chip.className = "model-chip state-ready";
        chip.title = status.message;
        chip.replaceChildren(el("span", { class: "dot" }), `Model ${status.version}`);
      }
      return true;
    }
    banner.querySelector('[data-field="message"]').textContent = status.message;
    const progress = banner.querySelector(".banner-progress");
    progress.hidden = status.progress_pct == null;
    if (status.progress_pct != null) {
      banner.querySelector('[data-field="bar"]').setAttribute("width", String(status.progress_pct));
      banner.querySelector('[data-field="pct"]').textContent = `${Math.round(status.progress_pct)}%`;
    }
    return false;
  }, 4000);
}

/* ---------------------------------------------------------------- small things */
function setupCommon() {
  // a page answering a form post (the new token, shown once) takes a plain address: reloading it must not
  // send the form again (and create another token)
  const replace = document.querySelector("[data-replace-url]");
  if (replace) window.history.replaceState(null, "", replace.dataset.replaceUrl);
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const text = document.querySelector(button.dataset.copy)?.textContent || "";
      try { await navigator.clipboard.writeText(text); button.textContent = "Copied"; } catch (e) { button.textContent = "Select and copy"; }
    });
  });
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => { if (!window.confirm(form.dataset.confirm)) event.preventDefault(); });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupCommon();
  const banner = document.getElementById("model-banner");
  if (banner) setupModelBanner(banner);
  const upload = document.getElementById("upload-form");
  if (upload) setupUpload(upload);
  const job = document.getElementById("job");
  if (job) setupJob(job);
  for (const id of ["live-run", "run-live"]) {
    const section = document.getElementById(id);
    if (section) setupRun(section);
  }
});
