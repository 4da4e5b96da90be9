// realfake page: upload photos to /api/predict and show every face with its score.
"use strict";

const results = document.getElementById("results");
const drop = document.getElementById("drop");
const input = document.getElementById("files");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

async function describeModel() {
  const line = document.getElementById("model");
  try {
    const r = await fetch("/api/model");
    const m = await r.json();
    const version = m.version ? ` version ${m.version}` : "";
    line.textContent = `Model: ${m.model}${version}, threshold ${m.threshold.toFixed(3)}`;
    const note = document.getElementById("trained-on");
    note.textContent = m.trained_on_note;
    note.classList.toggle("warn", m.trained_on === "sample" || m.trained_on === "unknown");
  } catch (e) {
    line.textContent = "The model could not be reached.";
  }
}

async function ask(file, explain, faces = "auto") {
  const form = new FormData();
  form.append("file", file, file.name);
  const r = await fetch(`/api/predict?explain=${explain}&faces=${faces}`, { method: "POST", body: form });
  const body = await r.json().catch(() => ({ error: `the server answered ${r.status}` }));
  if (!r.ok) {
    const e = new Error(body.error || (body.detail && JSON.stringify(body.detail)) || `error ${r.status}`);
    e.code = body.code;
    throw e;
  }
  return body;
}

function percent(p) { return `${(100 * p).toFixed(1)}%`; }

function faceLabel(f) { return f.face === null ? "Whole image" : `Face #${f.face}`; }

function render(card, file, answer) {
  card.querySelector(".pending")?.remove();
  const img = el("img", { src: answer.preview, alt: `${file.name} as the detector saw it` });
  const photo = el("div", { class: "photo" }, img);
  const list = el("ul", { class: "faces" });
  for (const f of answer.faces) {
    const kind = f.verdict;
    if (f.box) {
      const [x1, y1, x2, y2] = f.box;
      const box = el("div", { class: `box ${kind}`, "data-face": f.face }, el("span", { text: `#${f.face}` }));
      Object.assign(box.style, {
        left: `${(100 * x1) / answer.width}%`, top: `${(100 * y1) / answer.height}%`,
        width: `${(100 * (x2 - x1)) / answer.width}%`, height: `${(100 * (y2 - y1)) / answer.height}%`,
      });
      photo.append(box);
    }
    const item = el("li", { class: "face", "data-verdict": f.verdict },
      el("strong", { text: `${faceLabel(f)}: ` }),
      el("span", { class: "p-fake", text: `p_fake ${f.p_fake.toFixed(3)} (${percent(f.p_fake)} fake) ` }),
      f.threshold > answer.model.threshold
        ? el("span", { class: "threshold", text: `(threshold ${f.threshold.toFixed(3)} on a soft image) ` }) : null,
      el("span", { class: `verdict ${f.verdict}`, text: f.verdict === "uncertain" ? "CAN'T TELL" : f.verdict.toUpperCase() }),
      f.reason ? el("span", { class: "tag-uncertain", text: f.reason }) : null);
    list.append(item);
  }
  const camButton = el("button", { class: "secondary explain", type: "button", text: "Show Grad-CAM" });
  const cams = el("div", { class: "cams" });
  camButton.addEventListener("click", async () => {
    camButton.disabled = true;
    camButton.textContent = "Computing Grad-CAM…";
    try {
      const withCam = await ask(file, true);
      cams.replaceChildren(...withCam.faces.map((f) => el("figure", {},
        el("img", { src: f.explanation, alt: `Grad-CAM for ${faceLabel(f)}` }),
        el("figcaption", { text: `${faceLabel(f)}: red is evidence for fake. A dimmed border is outside the centre the network reads (the spectral probe reads it all; it has no map)` }))));
      camButton.remove();
    } catch (e) {
      cams.replaceChildren(el("p", { class: "error", text: e.message }));
      camButton.disabled = false;
      camButton.textContent = "Show Grad-CAM";
    }
  });
  const side = el("div", { class: "side" }, list, camButton, cams,
    el("p", { class: "meta", text: `Answered by ${answer.model.model}${answer.model.version ? " v" + answer.model.version : ""}, threshold ${answer.model.threshold.toFixed(3)}, trained on ${answer.model.trained_on === "sample" ? "the embedded sample only (not meaningful for real photos)" : answer.model.trained_on}` }));
  card.append(el("div", { class: "body" }, photo, side));
  card.dataset.state = "done";
}

async function check(file, card = null, faces = "auto") {
  if (card === null) {
    card = el("article", { class: "result", "data-file": file.name, "data-state": "pending" }, el("h2", { text: file.name }));
    results.prepend(card);
  }
  card.append(el("p", { class: "pending", text: faces === "off" ? "Scoring the whole image…" : "Looking for faces…" }));
  try {
    render(card, file, await ask(file, false, faces));
  } catch (e) {
    card.querySelector(".pending")?.remove();
    if (e.code === "no_face") {  // the page's own way out, not the API's parameter
      const whole = el("button", { class: "secondary whole", type: "button", text: "Check the whole image" });
      const note = el("div", { class: "error no-face", role: "alert" },
        el("p", { text: `${file.name}: no face found in this photo. The detector can still score the whole image, ` +
                        "which is reliable only when the face fills most of it." }), whole);
      whole.addEventListener("click", () => { note.remove(); card.dataset.state = "pending"; check(file, card, "off"); });
      card.append(note);
    } else {
      card.append(el("p", { class: "error", role: "alert", text: e.message }));
    }
    card.dataset.state = "error";
  }
}

function checkAll(files) { for (const f of files) check(f); }

input.addEventListener("change", () => { checkAll(input.files); input.value = ""; });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); checkAll(e.dataTransfer.files); });
describeModel();
