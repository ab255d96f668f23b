// The live log popup. Any link <a href="/runs/<id>" data-log-popup="<id>"> opens it in place (the
// href stays the way without JavaScript); its content is the HTMX fragment GET /runs/<id>/popup.
// Esc and the close button close it; focus stays inside while it is open and goes back to the
// link afterwards; closing dispatches `logpopup:closed` (detail.runId) on document.
// Also here: showing the lines of a log that is still streaming (batched per frame, the newest
// 2,000 kept), filtering them in the browser, and keeping logs scrolled to their newest line
// (the run page shares these).
(function () {
  "use strict";

  var dialog = null;
  var content = null;
  var opener = null;
  var FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), " +
    "textarea:not([disabled]), summary, [tabindex]:not([tabindex='-1'])";

  function popupUrl(link, runId) {
    var path = link.href ? new URL(link.href, window.location.href).pathname.replace(/\/+$/, "") : "";
    if (!/\/runs\/\d+$/.test(path)) path = "/runs/" + runId;
    return path + "/popup";
  }

  function ensureDialog() {
    if (dialog) return dialog;
    dialog = document.createElement("dialog");
    dialog.className = "log-popup";
    content = document.createElement("div");
    content.className = "log-popup-content";
    dialog.appendChild(content);
    document.body.appendChild(dialog);
    dialog.addEventListener("keydown", onKeydown);
    dialog.addEventListener("close", onClose);
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog) dialog.close();  // a click on the backdrop
      else if (event.target.closest("[data-popup-close]")) dialog.close();
    });
    content.addEventListener("htmx:responseError", function (event) {
      if (event.detail.target !== content) return;
      content.innerHTML = "";
      var note = document.createElement("p");
      note.className = "log-popup-loading";
      note.setAttribute("role", "alert");
      note.textContent = event.detail.xhr.status === 404
        ? "This run does not exist, or is not yours to see."
        : "The log could not be loaded (" + event.detail.xhr.status + "). Try the run's page.";
      content.appendChild(note);
    });
    return dialog;
  }

  function open(link) {
    var runId = link.getAttribute("data-log-popup");
    ensureDialog();
    if (dialog.open) dialog.close();
    opener = link;
    dialog.dataset.runId = runId;
    dialog.setAttribute("aria-label", "Log of run #" + runId);
    content.innerHTML = '<p class="log-popup-loading" role="status">Loading the log…</p>';
    dialog.showModal();
    window.htmx.ajax("GET", popupUrl(link, runId), {target: content, swap: "innerHTML"});
  }

  function onClose() {
    var runId = Number(dialog.dataset.runId);
    try {
      // Emptying through htmx cleans the fragment up, which closes its event stream.
      if (window.htmx && window.htmx.swap) window.htmx.swap(content, "", {swapStyle: "innerHTML"});
      else content.innerHTML = "";
    } catch (error) {
      content.innerHTML = "";  // a clean-up that fails must not keep focus or the event from following
    } finally {
      if (opener && document.body.contains(opener)) opener.focus();
      opener = null;
      document.dispatchEvent(new CustomEvent("logpopup:closed", {detail: {runId: runId}}));
    }
  }

  function focusables() {
    return Array.prototype.filter.call(dialog.querySelectorAll(FOCUSABLE), function (el) {
      return el.getClientRects().length > 0 && !el.closest("[hidden]");
    });
  }

  function onKeydown(event) {
    if (event.key === "Escape") {
      event.preventDefault();  // the search box would only clear itself
      dialog.close();
      return;
    }
    if (event.key !== "Tab") return;
    var items = focusables();
    if (!items.length) { event.preventDefault(); return; }
    var first = items[0];
    var last = items[items.length - 1];
    if (event.shiftKey && (document.activeElement === first || !dialog.contains(document.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (document.activeElement === last || !dialog.contains(document.activeElement))) {
      event.preventDefault();
      first.focus();
    }
  }

  // Open on a click on any [data-log-popup] link; a click meant for a new tab or window goes on.
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("[data-log-popup]") : null;
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey ||
        event.shiftKey || event.altKey || !window.htmx) return;
    if (!/^\d+$/.test(link.getAttribute("data-log-popup") || "")) return;
    event.preventDefault();
    open(link);
  });

  // Focus never stays behind the popup (a swap may drop the focused element).
  document.addEventListener("focusin", function (event) {
    if (dialog && dialog.open && !dialog.contains(event.target)) {
      var items = focusables();
      if (items.length) items[0].focus();
    }
  });

  // --- keeping logs at their newest line ----------------------------------------------------

  function scrollToEnd(root) {
    var lists = (root || document).querySelectorAll("ol.log[data-scroll-end], .log-popup ol.log");
    Array.prototype.forEach.call(lists, function (list) { list.scrollTop = list.scrollHeight; });
  }

  document.addEventListener("DOMContentLoaded", function () { scrollToEnd(document); });

  // Earlier lines come in above: keep the lines the reader looks at where they are.
  var keptFromBottom = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    keptFromBottom = null;
    if (target && /log-earlier$/.test(target.id || "")) {
      var list = target.closest("ol.log");
      keptFromBottom = {list: list, offset: list.scrollHeight - list.scrollTop};
    }
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    if (keptFromBottom) {
      keptFromBottom.list.scrollTop = keptFromBottom.list.scrollHeight - keptFromBottom.offset;
      keptFromBottom = null;
      return;
    }
    var target = event.detail.target;
    if (!target || !target.closest) return;
    if (dialog && dialog.contains(target)) {
      scrollToEnd(dialog);
      var frame = dialog.querySelector(".popup-frame");
      if (!dialog.contains(document.activeElement) || document.activeElement === dialog) {
        var close = dialog.querySelector("[data-popup-close]");
        if (close) close.focus();
      }
      if (frame) applyLiveFilters(frame);
    } else if (/log-view$/.test(target.id || "")) {
      scrollToEnd(target);
    }
  });

  // Live lines. A busy job writes hundreds of lines a second, each its own event: the lines of
  // one frame are put in at once (one parse, one layout read), only the new lines are filtered,
  // and the list keeps the newest LIVE_CAP lines; a note above them links the whole log.
  var LIVE_CAP = 2000;
  var pending = new WeakMap();  // list -> HTML of the events not yet shown

  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    var list = event.target;
    if (!list || !list.matches || !list.matches("ol.log")) return;
    event.preventDefault();  // put in here, batched, instead of one htmx swap per line
    var queue = pending.get(list);
    if (queue) { queue.push(event.detail.data); return; }
    pending.set(list, [event.detail.data]);
    var done = false;
    var flush = function () {
      if (done) return;
      done = true;
      var html = pending.get(list);
      pending.delete(list);
      if (document.body.contains(list)) showLines(list, html.join(""));
    };
    window.requestAnimationFrame(flush);
    window.setTimeout(flush, 250);  // a hidden tab draws no frames: keep the list bounded there too
  });

  function showLines(list, html) {
    var following = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    var template = document.createElement("template");
    template.innerHTML = html;
    var form = document.querySelector("form[data-live-filter='#" + list.id + "']");
    if (form) {
      var shows = lineFilter(form);
      Array.prototype.forEach.call(template.content.querySelectorAll("li.log-line"), function (line) {
        line.hidden = !shows(line);
      });
    }
    list.appendChild(template.content);
    keepNewest(list);
    if (following) list.scrollTop = list.scrollHeight;
  }

  function keepNewest(list) {
    var lines = list.getElementsByClassName("log-line");
    var excess = lines.length - LIVE_CAP;
    if (excess <= 0) return;
    var note = list.querySelector("li.log-dropped");
    var dropped = note ? Number(note.getAttribute("data-count")) : 0;
    while (excess > 0) {
      var first = note ? note.nextElementSibling : list.firstElementChild;
      if (first.classList.contains("log-line")) excess -= 1;
      dropped += first.classList.contains("log-line") ? 1 : Number(first.getAttribute("data-count") || 0);
      first.remove();
    }
    if (!note) {
      note = document.createElement("li");
      note.className = "log-more log-dropped";
      list.insertBefore(note, list.firstChild);
    }
    writeDroppedNote(note, list, dropped);
  }

  function writeDroppedNote(note, list, dropped) {
    note.setAttribute("data-count", String(dropped));
    note.textContent = dropped + " earlier line" + (dropped === 1 ? " is" : "s are") +
      " not kept here (the newest " + LIVE_CAP + " are): ";
    var links = [["data-full-log", "open the whole log"], ["data-download", "download it"]];
    links.forEach(function (pair, index) {
      var href = list.getAttribute(pair[0]);
      if (!href) return;
      if (index) note.appendChild(document.createTextNode(" or "));
      var link = document.createElement("a");
      link.href = href;
      link.textContent = pair[1];
      note.appendChild(link);
    });
    note.appendChild(document.createTextNode("."));
  }

  // --- filtering a live log in the browser --------------------------------------------------

  // Whether a line shows under the form's levels and find (none ticked: every level, as on the server).
  function lineFilter(form) {
    var levels = {};
    Array.prototype.forEach.call(form.querySelectorAll("input[name=level]"), function (box) {
      if (box.checked) levels[box.value] = true;
    });
    var none = Object.keys(levels).length === 0;
    var search = (form.querySelector("input[name=q]") || {value: ""}).value.trim().toLowerCase();
    return function (line) {
      var level = (line.className.match(/\blevel-(\w+)/) || [])[1];
      return (none || levels[level]) && (!search || line.textContent.toLowerCase().indexOf(search) >= 0);
    };
  }

  function applyLiveFilter(form) {
    var list = document.querySelector(form.getAttribute("data-live-filter"));
    if (!list) return;
    var shows = lineFilter(form);
    Array.prototype.forEach.call(list.querySelectorAll("li.log-line"), function (line) {
      line.hidden = !shows(line);
    });
  }

  function applyLiveFilters(root) {
    Array.prototype.forEach.call(root.querySelectorAll("form[data-live-filter]"), applyLiveFilter);
  }

  ["input", "change"].forEach(function (type) {
    document.addEventListener(type, function (event) {
      var form = event.target.closest ? event.target.closest("form[data-live-filter]") : null;
      if (form) applyLiveFilter(form);
    });
  });
  document.addEventListener("submit", function (event) {
    if (event.target.matches && event.target.matches("form[data-live-filter]")) {
      event.preventDefault();
      applyLiveFilter(event.target);
    }
  });
})();
