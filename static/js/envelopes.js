// Envelopes page: rows keep their open state across polls (the popup is executions.js's).
(function () {
  "use strict";

  function isOpen(body) {
    var button = body.querySelector("button.env-expand");
    return !!button && button.getAttribute("aria-expanded") === "true";
  }

  // The server draws rows open or closed as asked: a poll of an envelope (or a job) says whether it is
  // open, and an envelope's requests name its jobs whose statistics are open.
  document.addEventListener("htmx:configRequest", function (event) {
    var elt = event.detail.elt;
    var body = elt.closest && elt.closest("tbody.env-body, tbody.job-body");
    if (!body) return;
    var params = event.detail.parameters;
    if (elt === body) params.open = isOpen(body) ? "1" : "0";
    if (!body.classList.contains("env-body")) return;
    var open = [];
    Array.prototype.forEach.call(body.querySelectorAll("tbody.job-body"), function (job) {
      if (isOpen(job)) open.push(job.id.replace("job-", ""));
    });
    if (open.length) params.runs = open.join(",");
  });
})();
