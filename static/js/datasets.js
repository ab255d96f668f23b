// The dataset form's items tree: find items as you type, tick a whole item group at once.
// Without JavaScript every item is a plain check box and the domain has a button of its own.
(function () {
  "use strict";

  function hideNoScriptButtons() {
    Array.prototype.forEach.call(document.querySelectorAll(".no-js-only"), function (el) { el.hidden = true; });
  }

  function syncBranch(fieldset) {
    var boxes = fieldset.querySelectorAll('input[name="items"]');
    var ticked = fieldset.querySelectorAll('input[name="items"]:checked').length;
    var all = fieldset.querySelector("[data-select-branch]");
    if (!all) return;
    all.checked = boxes.length > 0 && ticked === boxes.length;
    all.indeterminate = ticked > 0 && ticked < boxes.length;
  }

  function syncAll(root) {
    Array.prototype.forEach.call((root || document).querySelectorAll("fieldset[data-branch]"), syncBranch);
    countChosen();
  }

  function countChosen() {
    var count = document.querySelector("[data-chosen-count]");
    if (count) count.textContent = document.querySelectorAll('#dataset-items input[name="items"]:checked').length;
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    var fieldset = target.closest && target.closest("fieldset[data-branch]");
    if (!fieldset) return;
    if (target.hasAttribute("data-select-branch")) {
      Array.prototype.forEach.call(fieldset.querySelectorAll('input[name="items"]'), function (box) {
        if (!box.closest("li").hidden) box.checked = target.checked;
      });
    }
    syncBranch(fieldset);
    countChosen();
  });

  document.addEventListener("input", function (event) {
    if (!event.target.hasAttribute || !event.target.hasAttribute("data-items-find")) return;
    var text = event.target.value.trim().toLowerCase();
    var tree = event.target.closest(".dataset-items");
    Array.prototype.forEach.call(tree.querySelectorAll("fieldset[data-branch]"), function (fieldset) {
      var shown = 0;
      Array.prototype.forEach.call(fieldset.querySelectorAll("li[data-item-text]"), function (li) {
        li.hidden = text !== "" && li.getAttribute("data-item-text").indexOf(text) < 0;
        if (!li.hidden) shown += 1;
      });
      fieldset.hidden = shown === 0;
    });
  });

  document.addEventListener("DOMContentLoaded", function () { hideNoScriptButtons(); syncAll(); });
  document.addEventListener("htmx:afterSwap", function () { syncAll(document); });
})();
