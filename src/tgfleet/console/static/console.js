// tgfleet console: small enhancements over server-rendered pages. No inline script, no eval
// (the Content-Security-Policy allows neither); every page works without this file.
(function () {
  "use strict";

  // The page's texts in its language (base.html's data block), with English fallbacks.
  var texts = {};
  try { texts = JSON.parse(document.getElementById("console-texts").textContent); } catch (ignored) { /* none */ }
  function text(key, fallback) { return texts[key] || fallback; }

  // Times arrive in UTC (<time datetime>); show them in the viewer's own zone, written as
  // the console's language writes dates.
  var formatter = new Intl.DateTimeFormat(document.documentElement.lang || undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short"
  });
  function localTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      var moment = new Date(el.getAttribute("datetime"));
      if (!isNaN(moment)) {
        el.textContent = formatter.format(moment);
        el.title = el.getAttribute("datetime");
      }
    });
  }

  // Toasts: the server names one in an HX-Trigger header ({"toast": {"text", "level"}}).
  function toast(text, level) {
    var box = document.getElementById("toasts");
    if (!box) { return; }
    var item = document.createElement("div");
    item.className = "toast " + (level || "ok");
    item.textContent = text;
    box.appendChild(item);
    setTimeout(function () { item.remove(); }, 6000);
  }
  document.querySelectorAll("[data-flash]").forEach(function (item) {
    setTimeout(function () { item.remove(); }, 8000);
  });
  document.body.addEventListener("toast", function (event) {
    var detail = event.detail || {};
    toast(detail.text || "", detail.level);
  });
  document.body.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var message = text("request_failed", "The request failed ({status}).").replace("{status}", String(xhr.status));
    var type = xhr.getResponseHeader("content-type") || "";
    if (type.indexOf("text/plain") === 0 && xhr.responseText) { message = xhr.responseText; }
    else { try { message = JSON.parse(xhr.responseText).detail || message; } catch (ignored) { /* HTML */ } }
    toast(message, "bad");
  });

  // "/" focuses the page's search box (unless the viewer is typing somewhere).
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    if (target.closest && target.closest("input, textarea, select, [contenteditable]")) { return; }
    var search = document.querySelector("[data-search]");
    if (search) { event.preventDefault(); search.focus(); search.select(); }
  });

  // Live updates: the SSE extension delivers HTML per element; this applies it now, at the
  // chosen rate, or on resume (the newest per element, so nothing is lost while paused).
  // The element that holds the stream (sse-connect) is <body>: every sse-swap element of
  // the page is inside it; the controls are in the bar at the bottom.
  var live = document.querySelector("[data-live]");
  var controls = document.getElementById("live");
  if (live && controls) {
    var state = controls.querySelector("[data-live-state]");
    var pauseButton = controls.querySelector("[data-live-pause]");
    var rateSelect = controls.querySelector("[data-live-rate]");
    var pending = new Map();
    var paused = false;
    var timer = null;
    var setState = function (status, text) { state.dataset.status = status; state.textContent = text; };
    setState("connecting", text("connecting", "Connecting…"));
    var apply = function () {
      pending.forEach(function (html, element) {
        if (document.body.contains(element)) {
          htmx.swap(element, html, { swapStyle: element.getAttribute("hx-swap") || "innerHTML" });
          element.classList.remove("updated");
          void element.offsetWidth;
          element.classList.add("updated");
          localTimes(element);
        }
      });
      pending.clear();
    };
    var schedule = function () {
      if (timer) { clearInterval(timer); timer = null; }
      var every = Number(rateSelect.value) || 0;
      if (every > 0) { timer = setInterval(function () { if (!paused) { apply(); } }, every * 1000); }
    };
    rateSelect.addEventListener("change", schedule);
    pauseButton.addEventListener("click", function () {
      paused = !paused;
      pauseButton.setAttribute("aria-pressed", String(paused));
      pauseButton.textContent = paused ? text("resume", "Resume") : text("pause", "Pause");
      if (paused) { setState("paused", text("paused_kept", "Paused: updates are kept and applied on resume")); }
      else { apply(); setState("open", text("live", "Live")); }
    });
    live.addEventListener("htmx:sseOpen", function (event) {
      setState(paused ? "paused" : "open", paused ? text("paused", "Paused") : text("live", "Live"));
      var source = event.detail.source;
      source.addEventListener("reset", function () { window.location.reload(); });
    });
    live.addEventListener("htmx:sseError", function () { setState("error", text("reconnecting", "Reconnecting…")); });
    live.addEventListener("htmx:sseBeforeMessage", function (event) {
      event.preventDefault();
      if (event.detail.lastEventId) {
        // A reconnect (a new EventSource) resumes after the last change applied here.
        var url = new URL(live.getAttribute("sse-connect"), window.location.href);
        url.searchParams.set("last_event_id", event.detail.lastEventId);
        live.setAttribute("sse-connect", url.pathname + url.search);
      }
      pending.set(event.target, event.detail.data);
      if (!paused && !(Number(rateSelect.value) > 0)) { apply(); }
    });
  }

  // Select-all on tables of rows with checkboxes, and the count a bulk bar shows.
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches("[data-select-all]")) {
      document.querySelectorAll("[data-select-row]").forEach(function (box) { box.checked = target.checked; });
    }
    if (target.matches("[data-select-all], [data-select-row]")) {
      var count = document.querySelectorAll("[data-select-row]:checked").length;
      document.querySelectorAll("[data-selected-count]").forEach(function (el) { el.textContent = String(count); });
      document.querySelectorAll("[data-needs-selection]").forEach(function (el) { el.disabled = count === 0; });
    }
  });

  // The import page's drop zone: files dropped on it join the file input's own list (a
  // DataTransfer), so the form posts them as if picked; without JavaScript the picker works.
  document.querySelectorAll("[data-dropzone]").forEach(function (zone) {
    var input = zone.querySelector("input[type=file]");
    var list = zone.querySelector("[data-dropzone-list]");
    var hint = zone.querySelector("[data-dropzone-hint]");
    if (!input || typeof DataTransfer === "undefined") { return; }
    if (hint) { hint.hidden = false; }
    var show = function () {
      if (!list) { return; }
      list.replaceChildren();
      Array.prototype.forEach.call(input.files, function (file) {
        var item = document.createElement("li");
        item.textContent = file.name + " (" + file.size + " B)";
        list.appendChild(item);
      });
    };
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    });
    zone.addEventListener("dragleave", function (event) {
      if (!zone.contains(event.relatedTarget)) { zone.classList.remove("dragging"); }
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      zone.classList.remove("dragging");
      var files = new DataTransfer();
      Array.prototype.forEach.call(input.files, function (file) { files.items.add(file); });
      Array.prototype.forEach.call(event.dataTransfer.files, function (file) { files.items.add(file); });
      input.files = files.files;
      show();
    });
    input.addEventListener("change", show);
  });

  // The language switch applies on change (its button is for pages without JavaScript).
  document.querySelectorAll("[data-language-switch]").forEach(function (form) {
    var apply = form.querySelector("[data-language-apply]");
    if (apply) { apply.hidden = true; }
    form.querySelector("select").addEventListener("change", function () { form.requestSubmit(); });
  });

  // --- Secrets shown once (users and own-account pages): the Copy button writes the field to
  // the clipboard; when the browser refuses (no permission, http), the text is selected for
  // Ctrl+C instead. The page came from a POST: its history entry becomes the page's own
  // address (data-back), so a reload asks for the page afresh (which does not show the
  // secret) instead of posting again.
  var secrets = document.querySelectorAll("[data-secret]");
  var shownOnce = document.querySelector("[data-back]");
  if (shownOnce && window.history && window.history.replaceState) {
    window.history.replaceState(null, "", shownOnce.getAttribute("data-back"));
  }
  secrets.forEach(function (field) {
    field.addEventListener("focus", function () { field.select(); });
  });
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    var said = document.querySelector("[data-copy-state=\"" + button.getAttribute("data-copy") + "\"]");
    if (!field) { return; }
    button.hidden = false;
    var tell = function (message) { if (said) { said.textContent = message; } };
    var selectIt = function () {
      field.focus();
      field.select();
      tell(button.getAttribute("data-copy-failed") || text("copy_failed", "Copy failed: select the text and copy it yourself."));
    };
    button.addEventListener("click", function () {
      if (!navigator.clipboard || !window.isSecureContext) { selectIt(); return; }
      navigator.clipboard.writeText(field.value).then(function () {
        tell(button.getAttribute("data-copied") || text("copied", "Copied"));
        button.dataset.copiedDone = "true";
      }, selectIt);
    });
  });
  // The command palette: Ctrl/Cmd-K (or the header's link) opens it, typing asks the
  // server (htmx), arrows move through the results, Enter opens one, Esc closes.
  var palette = document.getElementById("palette");
  if (palette && typeof palette.showModal === "function") {
    var paletteInput = palette.querySelector("#palette-q");
    var items = function () { return Array.prototype.slice.call(palette.querySelectorAll("[data-palette-item]")); };
    var openPalette = function () {
      if (palette.open) { return; }
      palette.showModal();
      paletteInput.select();
      htmx.trigger(paletteInput, "palette-open");
    };
    document.addEventListener("keydown", function (event) {
      if ((event.ctrlKey || event.metaKey) && !event.altKey && (event.key === "k" || event.key === "K")) {
        event.preventDefault();
        openPalette();
      }
    });
    document.querySelectorAll("[data-palette-open]").forEach(function (link) {
      link.addEventListener("click", function (event) { event.preventDefault(); openPalette(); });
    });
    palette.addEventListener("click", function (event) {
      if (event.target === palette) { palette.close(); }  // a click on the backdrop
    });
    palette.querySelector("[data-palette-form]").addEventListener("submit", function (event) {
      var first = items()[0];
      if (first) { event.preventDefault(); window.location.href = first.href; }
    });
    palette.addEventListener("keydown", function (event) {
      // Esc closes at once (a search field would first spend it on clearing itself).
      if (event.key === "Escape") { event.preventDefault(); palette.close(); return; }
      if (event.key !== "ArrowDown" && event.key !== "ArrowUp") { return; }
      var list = items();
      if (!list.length) { return; }
      event.preventDefault();
      var at = list.indexOf(document.activeElement);
      var next = event.key === "ArrowDown" ? at + 1 : at - 1;
      if (next < 0) { paletteInput.focus(); return; }
      list[Math.min(next, list.length - 1)].focus();
    });
  }

  // Playbook editors: the gutter beside the textarea numbers its lines (kept in step on
  // input and scroll); "line N" links move the caret to that line; a Check swaps the
  // problems block and the gutter marks its lines. Without JavaScript the gutter is the
  // server's and the links jump to its line.
  function gutterOf(textarea) { return document.querySelector('[data-gutter="' + textarea.id + '"]'); }
  function badLines(textarea) {
    var lines = new Map();
    var block = document.querySelector('[data-problems="' + textarea.id + '"]');
    if (block) {
      block.querySelectorAll("[data-line]").forEach(function (item) {
        var line = Number(item.dataset.line);
        var text = item.textContent.replace(/\s+/g, " ").trim();
        lines.set(line, lines.has(line) ? lines.get(line) + "\n" + text : text);
      });
    }
    return lines;
  }
  function numberLines(textarea) {
    var gutter = gutterOf(textarea);
    if (!gutter) { return; }
    var count = textarea.value.split("\n").length;
    if (textarea.value.endsWith("\n")) { count = Math.max(1, count - 1); }
    var prefix = textarea.id.replace(/-source$/, "");
    var bad = badLines(textarea);
    while (gutter.children.length > count) { gutter.lastElementChild.remove(); }
    while (gutter.children.length < count) {
      var item = document.createElement("li");
      item.id = prefix + "-L" + (gutter.children.length + 1);
      item.textContent = String(gutter.children.length + 1);
      gutter.appendChild(item);
    }
    Array.prototype.forEach.call(gutter.children, function (item, index) {
      item.classList.toggle("bad", bad.has(index + 1));
      if (bad.has(index + 1)) { item.title = bad.get(index + 1); } else { item.removeAttribute("title"); }
    });
    gutter.scrollTop = textarea.scrollTop;
  }
  function goToLine(textarea, line) {
    var lines = textarea.value.split("\n");
    var offset = 0;
    for (var index = 0; index < line - 1 && index < lines.length; index += 1) { offset += lines[index].length + 1; }
    textarea.focus();
    textarea.setSelectionRange(offset, offset + (lines[line - 1] || "").length);
    var style = window.getComputedStyle(textarea);
    var height = parseFloat(style.lineHeight) || 20;
    textarea.scrollTop = Math.max(0, (line - 3) * height);
    var gutter = gutterOf(textarea);
    if (gutter) {
      gutter.scrollTop = textarea.scrollTop;
      Array.prototype.forEach.call(gutter.children, function (item, index) { item.classList.toggle("current", index + 1 === line); });
    }
  }
  document.querySelectorAll("[data-source-editor]").forEach(function (textarea) {
    textarea.addEventListener("input", function () { numberLines(textarea); });
    textarea.addEventListener("scroll", function () {
      var gutter = gutterOf(textarea);
      if (gutter) { gutter.scrollTop = textarea.scrollTop; }
    });
    numberLines(textarea);
  });
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("[data-goto-line]");
    if (!link) { return; }
    var textarea = document.getElementById(link.dataset.editor);
    if (!textarea) { return; }
    event.preventDefault();
    goToLine(textarea, Number(link.dataset.gotoLine));
  });
  document.body.addEventListener("htmx:afterSwap", function () {
    document.querySelectorAll("[data-source-editor]").forEach(numberLines);
  });

  localTimes(document);
  document.body.addEventListener("htmx:afterSettle", function (event) { localTimes(event.target); });
})();
