// Keep the live log scrolled to the newest line unless the reader scrolled up to read.
document.addEventListener("htmx:sseBeforeMessage", function () {
  var log = document.getElementById("log");
  if (log) log.dataset.follow = (log.scrollHeight - log.scrollTop - log.clientHeight < 40) ? "1" : "0";
});
document.addEventListener("htmx:sseMessage", function () {
  var log = document.getElementById("log");
  if (log && log.dataset.follow !== "0") log.scrollTop = log.scrollHeight;
});
