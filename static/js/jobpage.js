// The job page: its tabs follow the WAI-ARIA tabs pattern (arrow keys move and activate, Home and
// End go to the first and last), and the latest executions refresh after a cancel.
(function () {
  "use strict";
  var TAB = "#job-tabs [role=tab]";

  function allTabs() {
    return Array.prototype.slice.call(document.querySelectorAll(TAB));
  }

  function select(active) {
    allTabs().forEach(function (tab) {
      var on = tab === active;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
    });
  }

  // The tab of the panel shown (after a swap, or when the back button restores a page).
  function syncWithPanel() {
    var panel = document.getElementById("job-tab");
    var tab = panel && document.getElementById("tab-" + panel.getAttribute("data-tab"));
    if (tab) { select(tab); showSelected(); }
  }

  document.addEventListener("keydown", function (event) {
    var tab = event.target.closest && event.target.closest(TAB);
    if (!tab || event.altKey || event.ctrlKey || event.metaKey) return;
    var tabs = allTabs(), at = tabs.indexOf(tab), next = null;
    if (event.key === "ArrowRight") next = tabs[(at + 1) % tabs.length];
    else if (event.key === "ArrowLeft") next = tabs[(at - 1 + tabs.length) % tabs.length];
    else if (event.key === "Home") next = tabs[0];
    else if (event.key === "End") next = tabs[tabs.length - 1];
    else if (event.key === " ") next = tab; // a link answers Enter; a tab answers Space too
    if (!next) return;
    event.preventDefault();
    select(next);
    next.focus();
    next.click();
  });

  document.addEventListener("click", function (event) {
    var tab = event.target.closest && event.target.closest(TAB);
    if (tab) select(tab);
  });
  // On a narrow screen the tab list scrolls sideways: keep the selected tab in sight.
  function showSelected() {
    var tab = document.querySelector(TAB + "[aria-selected=true]");
    if (tab && tab.scrollIntoView) tab.scrollIntoView({block: "nearest", inline: "nearest"});
  }
  document.addEventListener("DOMContentLoaded", showSelected);
  document.addEventListener("htmx:afterSettle", syncWithPanel);
  document.addEventListener("htmx:historyRestore", syncWithPanel);

  // A form with data-refresh="#table" (cancel on a run's row) asks for that table again when its
  // request is answered, from the address the table carries (its filters, sort and page).
  function refresh(selector) {
    var table = document.querySelector(selector);
    if (table && window.htmx) window.htmx.ajax("GET", table.getAttribute("data-url"), {target: selector, swap: "outerHTML"});
  }
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail && event.detail.elt;
    var selector = form && form.getAttribute && form.getAttribute("data-refresh");
    if (selector) refresh(selector);
  });
  // Reading a log in the popup may have taken a while: show the runs as they are now.
  document.addEventListener("logpopup:closed", function () { refresh("#runs-table"); });
})();
