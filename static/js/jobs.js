// The jobs list: ticks, bulk confirmations, the find box across back/forward, and a refresh of
// the table when the live log popup closes (the log icon turns light).
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function table() { return document.getElementById("jobs-table"); }

  function ticks() {
    var root = table();
    return root ? Array.prototype.slice.call(root.querySelectorAll("input[name=job_id]")) : [];
  }

  // "Select every job on this page": shown only where it works.
  function setUpTickAll() {
    var all = document.getElementById("tick-all");
    if (!all) return;
    all.hidden = false;
    var boxes = ticks();
    all.checked = boxes.length > 0 && boxes.every(function (box) { return box.checked; });
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.id === "tick-all") {
      ticks().forEach(function (box) { box.checked = target.checked; });
    } else if (target.name === "job_id") {
      setUpTickAll();
    }
  });

  // Remove and restore ask first, naming how many jobs are ticked.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id !== "jobs-bulk") return;
    var button = event.submitter;
    var message = button && button.getAttribute("data-confirm-each");
    if (!message) return;
    var count = ticks().filter(function (box) { return box.checked; }).length;
    if (count && !window.confirm(message.replace("{n}", count))) event.preventDefault();
  });

  // Back and forward restore the table from htmx's history; the find box is outside it, so
  // it takes its text from the address.
  function findFromAddress() {
    var find = document.getElementById("find");
    if (find) find.value = new URLSearchParams(window.location.search).get("q") || "";
  }
  document.addEventListener("htmx:historyRestore", findFromAddress);
  window.addEventListener("popstate", function () { window.setTimeout(findFromAddress, 0); });
  window.addEventListener("pageshow", findFromAddress);

  document.addEventListener("htmx:afterSettle", setUpTickAll);
  document.addEventListener("DOMContentLoaded", setUpTickAll);

  // The popup marked the log read: refresh the table (its ticks, sort and page stay).
  document.addEventListener("logpopup:closed", function () {
    var refresh = document.getElementById("jobs-refresh");
    if (refresh && window.htmx) window.htmx.trigger(refresh, "refresh");
  });
})();
