// The page of `stic serve`: uploads a photo or a .stic file, shows the server's report.
"use strict";

const $ = (id) => document.getElementById(id);
const bytes = (n) => n.toLocaleString("en") + " B";
let panels = [];
let timer = null;

function setBusy(message) {
  for (const button of document.querySelectorAll("button")) button.disabled = Boolean(message);
  clearInterval(timer);
  $("status").textContent = message || "";
  if (!message) return;
  const started = Date.now();
  timer = setInterval(() => {
    $("status").textContent = `${message} ${Math.round((Date.now() - started) / 1000)} s`;
  }, 1000);
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function post(url, body, message) {
  showError("");
  setBusy(message);
  try {
    const response = await fetch(url, { method: "POST", body });
    let report;
    try {
      report = await response.json();
    } catch {
      throw new Error(`the server answered ${response.status} ${response.statusText}`);
    }
    if (!response.ok) throw new Error(report.error || `the server answered ${response.status}`);
    render(report);
  } catch (err) {
    $("result").hidden = true;
    showError(String(err.message || err));
  } finally {
    setBusy("");
  }
}

function render(report) {
  const base = `/results/${report.id}/`;
  panels = report.panels.map((p) => ({ ...p, url: base + encodeURIComponent(p.image) }));
  const stic = panels.find((p) => p.key === "stic");
  const timing = [report.encode_seconds != null ? `encoded in ${report.encode_seconds} s` : "",
                  `decoded in ${report.decode_seconds} s`].filter(Boolean).join(", ");
  $("result-title").textContent = `${report.name}: ${report.width}×${report.height}, ` +
    `stic file ${bytes(stic.bytes)} (${stic.bpp.toFixed(4)} bpp), ${timing}`;
  $("result-caption").textContent = report.caption ? `Caption: ${report.caption}` : "No caption in the file.";
  $("result-warnings").replaceChildren(...report.warnings.map((w) => {
    const item = document.createElement("li");
    item.textContent = `warning: ${w}`;
    return item;
  }));

  $("panels").replaceChildren(...panels.map((p) => {
    const figure = document.createElement("figure");
    figure.dataset.key = p.key;
    const img = document.createElement("img");
    img.src = p.url;
    img.alt = p.label;
    img.title = "show in the comparison above";
    img.addEventListener("click", () => { $("right").value = p.key; updateCompare(); $("compare").scrollIntoView(); });
    const caption = document.createElement("figcaption");
    const size = p.bytes != null ? ` — ${bytes(p.bytes)}, ${p.bpp.toFixed(4)} bpp` : "";
    caption.innerHTML = `<strong></strong><span class="size"></span><br><span class="note"></span> `;
    caption.querySelector("strong").textContent = p.label;
    caption.querySelector(".size").textContent = size;
    caption.querySelector(".note").textContent = p.note;
    if (p.download) {
      const link = document.createElement("a");
      link.href = base + encodeURIComponent(p.download) + "?download=1";
      link.download = p.download;
      link.textContent = `download ${p.download}`;
      link.className = `download-${p.key}`;
      caption.append(link);
    }
    figure.append(img, caption);
    return figure;
  }));

  for (const [select, fallback] of [[$("left"), "original"], [$("right"), "stic"]]) {
    select.replaceChildren(...panels.filter((p) => p.bytes != null || p.key === "original").map((p) => new Option(p.label, p.key)));
    select.value = panels.some((p) => p.key === fallback) ? fallback : panels[0].key;
  }
  $("compare").hidden = panels.length < 2;

  $("sections").tBodies[0].replaceChildren(...report.info.sections.map((s) => {
    const row = document.createElement("tr");
    const codec = s.step ? `${s.codec} (step ${s.step})` : s.codec;
    for (const text of [s.kind, codec, bytes(s.bytes), s.bpp != null ? s.bpp.toFixed(5) : ""]) {
      row.insertCell().textContent = text;
    }
    return row;
  }));
  $("result").hidden = false;
  updateCompare();
}

function updateCompare() {
  const find = (key) => panels.find((p) => p.key === key);
  const left = find($("left").value), right = find($("right").value);
  if (!left || !right) return;
  $("left-img").src = left.url;
  $("right-img").src = right.url;
  $("left-img").alt = left.label;
  $("right-img").alt = right.label;
  const zoom = $("zoom").value;
  const stack = document.querySelector(".stack");
  stack.classList.toggle("fit", zoom === "fit");
  const rightImg = $("right-img");  // the left image covers it exactly (the stack's size is the right one's)
  rightImg.style.width = zoom === "fit" || !rightImg.naturalWidth ? "" : `${Number(zoom) * rightImg.naturalWidth}px`;
  $("left-img").style.clipPath = `inset(0 ${100 - Number($("split").value)}% 0 0)`;
}

for (const id of ["left", "right", "zoom", "split"]) $(id).addEventListener("input", updateCompare);
$("right-img").addEventListener("load", updateCompare);

$("compress-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (!$("photo").files.length) return showError("choose or drop a photo first");
  const body = new FormData(event.target);
  body.delete(body.get("rate") === "bpp" ? "quality" : "bpp");
  body.delete("rate");
  post("/api/compress", body, "Compressing (the first photo also loads the models)…");
});

$("decompress-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (!$("stic-file").files.length) return showError("choose or drop a .stic file first");
  post("/api/decompress", new FormData(event.target), "Decoding…");
});

for (const form of document.querySelectorAll("form.drop")) {
  const input = $(form.dataset.input);
  form.addEventListener("dragover", (event) => { event.preventDefault(); form.classList.add("over"); });
  form.addEventListener("dragleave", () => form.classList.remove("over"));
  form.addEventListener("drop", (event) => {
    event.preventDefault();
    form.classList.remove("over");
    if (event.dataTransfer.files.length) input.files = event.dataTransfer.files;
  });
}
