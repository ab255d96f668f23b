// The support pages. Everything here is an addition: without JavaScript the script is a
// textarea, the MD5 is selectable text, and "Add row" asks the server for one more row.
(function () {
  "use strict";

  // The script editor (static/vendor/editor.js, CodeMirror) in place of the textarea.
  function mountEditors(root) {
    if (!window.FiretimeEditor) return;
    Array.prototype.forEach.call(root.querySelectorAll("textarea[data-code-editor]"), function (area) {
      if (area.dataset.mounted) return;
      area.dataset.mounted = "1";
      window.FiretimeEditor.mount(area);
    });
  }

  // Copy buttons: <button data-copy="#md5-3"> copies the text of #md5-3.
  function showCopyButtons(root) {
    Array.prototype.forEach.call(root.querySelectorAll("button[data-copy]"), function (button) {
      if (navigator.clipboard) button.hidden = false;
    });
  }

  document.addEventListener("click", function (event) {
    var copy = event.target.closest && event.target.closest("button[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.getAttribute("data-copy"));
      if (!source) return;
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        var label = copy.textContent;
        copy.textContent = "Copied";
        setTimeout(function () { copy.textContent = label; }, 1500);
      });
      return;
    }
    var add = event.target.closest && event.target.closest("button[data-add-row]");
    if (add) {
      event.preventDefault();  // rows are added here, not by a round trip to the server
      addRow();
      return;
    }
    var remove = event.target.closest && event.target.closest("button[data-remove-row]");
    if (remove) {
      var row = remove.closest("tr");
      var next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      var focus = next && next.querySelector("input");
      (focus || document.querySelector("button[data-add-row]")).focus();
    }
  });

  // A new configuration row, numbered after the highest index on the page (the server reads
  // the rows in index order; gaps left by removed rows do not matter).
  function addRow() {
    var body = document.querySelector("#config-rows tbody");
    var template = document.getElementById("config-row-template");
    if (!body || !template) return;
    var highest = -1;
    Array.prototype.forEach.call(body.querySelectorAll("input[name^='config-']"), function (input) {
      var match = input.name.match(/^config-(\d+)-/);
      if (match) highest = Math.max(highest, Number(match[1]));
    });
    var html = template.innerHTML.replace(/__i__/g, String(highest + 1));
    body.insertAdjacentHTML("beforeend", html);
    body.lastElementChild.querySelector("input").focus();
  }

  function start() {
    mountEditors(document);
    showCopyButtons(document);
    Array.prototype.forEach.call(document.querySelectorAll("button[data-remove-row]"), function (button) {
      button.hidden = false;
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
  document.addEventListener("htmx:afterSwap", function (event) { showCopyButtons(event.target); });
})();
