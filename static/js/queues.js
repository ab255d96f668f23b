// Queues page: the live lists and the panels' heads poll every few seconds; a poll waits while
// the tab is hidden, while someone is in that part's fields, or while a field there holds text
// not yet sent (a filter not applied, a pause reason): a swap would throw the typing away.
function queuesEditing(elt) {
  var focused = document.activeElement;
  if (focused && elt.contains(focused) && focused.matches("input, select")) return true;
  var fields = elt.querySelectorAll("input[type=text], input[type=search]");
  for (var i = 0; i < fields.length; i++) {
    if (fields[i].value !== fields[i].defaultValue) return true;
  }
  return false;
}

document.addEventListener("htmx:beforeRequest", function (event) {
  var elt = event.detail.elt;
  if (!elt || !elt.hasAttribute || !elt.hasAttribute("data-queue-poll")) return;
  if (document.hidden || queuesEditing(elt)) event.preventDefault();
});
