// Forms that change something ask first: <form data-confirm="Cancel run #3?">.
document.addEventListener("submit", function (event) {
  var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) event.preventDefault();
});

// Keep the live log scrolled to the newest line unless the reader scrolled up to read.
document.addEventListener("htmx:sseBeforeMessage", function () {
  var log = document.getElementById("log");
  if (log) log.dataset.follow = (log.scrollHeight - log.scrollTop - log.clientHeight < 40) ? "1" : "0";
});
document.addEventListener("htmx:sseMessage", function () {
  var log = document.getElementById("log");
  if (log && log.dataset.follow !== "0") log.scrollTop = log.scrollHeight;
});
