// Keyboard shortcuts on the candidates page: 1-9 confirm that candidate, r rejects all,
// n reports a new SKU (not in the catalogue), u undoes one's own decision, / searches.
// Bound once on the document because htmx replaces the result while it polls.
document.addEventListener("keydown", function (event) {
  const target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return;
  const click = (id) => {
    const button = document.getElementById(id);
    if (button) { event.preventDefault(); button.click(); }
  };
  if (/^[1-9]$/.test(event.key)) {
    const button = document.querySelector(`.candidates button.confirm[data-key="${event.key}"]`);
    if (button) { event.preventDefault(); button.closest("li").classList.add("focused"); button.click(); }
  } else if (event.key === "r") {
    click("reject-all");
  } else if (event.key === "n") {
    click("new-sku");
  } else if (event.key === "u") {
    click("undo");
  } else if (event.key === "/") {
    const search = document.getElementById("sku-search") || document.getElementById("history-q");
    if (search) { event.preventDefault(); search.focus(); }
  }
});

// The undo button leaves when its window closes (the server refuses a late undo anyway).
setInterval(function () {
  document.querySelectorAll(".undo-form[data-deadline]").forEach((form) => {
    if (Date.now() > parseInt(form.dataset.deadline, 10) * 1000) form.remove();
  });
}, 1000);
