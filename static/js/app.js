// Forms that change something ask first: <form data-confirm="Cancel run #3?">.
document.addEventListener("submit", function (event) {
  var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) event.preventDefault();
});

// The header clock ticks: server time, from the server's own reading at page load (its time
// zone offset included), advanced by the browser's clock each second.
(function () {
  var clock = document.getElementById("server-time");
  if (!clock) return;
  var stamp = clock.getAttribute("datetime") || "";
  var zone = stamp.match(/([+-])(\d\d):?(\d\d)$/);
  var loaded = Date.parse(stamp.replace(/(\.\d{3})\d+/, "$1"));  // microseconds: not every parser reads them
  if (isNaN(loaded)) return;
  var offset = zone ? (zone[1] === "-" ? -1 : 1) * (Number(zone[2]) * 60 + Number(zone[3])) * 60000 : 0;
  var skew = loaded - Date.now();
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    var now = Date.now() + skew;
    var wall = new Date(now + offset);  // read with getUTC*: the server's wall clock
    clock.textContent = wall.getUTCFullYear() + "-" + pad(wall.getUTCMonth() + 1) + "-" + pad(wall.getUTCDate()) +
      " " + pad(wall.getUTCHours()) + ":" + pad(wall.getUTCMinutes()) + ":" + pad(wall.getUTCSeconds());
    setTimeout(tick, 1000 - (now % 1000) + 5);
  }
  tick();
})();
