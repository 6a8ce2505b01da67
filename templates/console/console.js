// Progressive enhancement only: every page works without it.
// Filter selects submit on change; a page marked data-refresh reloads itself every N seconds.
document.querySelectorAll("form.filters select").forEach(function (s) {
  s.addEventListener("change", function () { s.form.submit(); });
});
var r = document.querySelector("[data-refresh]");
if (r) setTimeout(function () { location.reload(); }, 1000 * Number(r.getAttribute("data-refresh")));
