// Executions page: rows that expand, the audit popup, and filters that follow the URL.
(function () {
  "use strict";

  // A row's details button shows and hides the row below it; HTMX loads that row on the first click.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.expand");
    if (!button) return;
    var open = button.getAttribute("aria-expanded") === "true";
    button.setAttribute("aria-expanded", open ? "false" : "true");
    var row = document.getElementById(button.getAttribute("aria-controls"));
    if (row) row.hidden = open;
  });

  // The loaded details row replaces the placeholder: show it only if its button is still "expanded".
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "audit-dialog-body") openAudit(target);
    Array.prototype.forEach.call(document.querySelectorAll("tr.exec-details"), function (row) {
      var button = document.querySelector('button.expand[aria-controls="' + row.id + '"]');
      row.hidden = !button || button.getAttribute("aria-expanded") !== "true";
    });
  });

  var opener = null;
  document.addEventListener("click", function (event) {
    var link = event.target.closest("[data-audit-dialog]");
    if (link) opener = link;
    if (event.target.closest("[data-close-dialog]")) {
      var dialog = event.target.closest("dialog");
      if (dialog) dialog.close();
    }
  });

  function openAudit(body) {
    var dialog = document.getElementById("audit-dialog");
    if (!dialog) return;
    var content = body.querySelector("[data-title]");
    document.getElementById("audit-dialog-title").textContent = content ? content.getAttribute("data-title") : "Audit";
    if (!dialog.open) dialog.showModal();
  }

  document.addEventListener("close", function (event) {
    if (event.target.id === "audit-dialog" && opener) {
      opener.focus();
      opener = null;
    }
  }, true);

  // Back and forward restore the table from HTMX's history; put the filter fields back as the URL has them.
  document.addEventListener("htmx:historyRestore", syncFilters);
  window.addEventListener("popstate", function () { window.setTimeout(syncFilters, 0); });

  function syncFilters() {
    var form = document.getElementById("execution-filters");
    if (!form) return;
    var params = new URLSearchParams(window.location.search);
    Array.prototype.forEach.call(form.elements, function (field) {
      if (!field.name) return;
      field.value = params.get(field.name) || "";
    });
  }
})();
