// Keyboard shortcuts on the candidates page: 1-9 confirm that candidate, r rejects all, / searches.
// Bound once on the document because htmx replaces the result while it polls.
document.addEventListener("keydown", function (event) {
  const target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return;
  if (/^[1-9]$/.test(event.key)) {
    const button = document.querySelector(`.candidates button.confirm[data-key="${event.key}"]`);
    if (button) { event.preventDefault(); button.closest("li").classList.add("focused"); button.click(); }
  } else if (event.key === "r") {
    const button = document.getElementById("reject-all");
    if (button) { event.preventDefault(); button.click(); }
  } else if (event.key === "/") {
    const search = document.getElementById("sku-search");
    if (search) { event.preventDefault(); search.focus(); }
  }
});
