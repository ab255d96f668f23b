// Queues page: the live lists poll every 3 s; a poll waits while the tab is hidden or while
// someone is in that list's filter fields (a swap would throw the typing away).
document.addEventListener("htmx:beforeRequest", function (event) {
  var elt = event.detail.elt;
  if (!elt || !elt.hasAttribute || !elt.hasAttribute("data-queue-poll")) return;
  var focused = document.activeElement;
  if (document.hidden || (focused && elt.contains(focused) && focused.matches("input, select"))) {
    event.preventDefault();
  }
});
