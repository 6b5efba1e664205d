// QA keyboard shortcuts and small helpers. Bound once on the document: htmx swaps the table.
// Queue: j/k move, x select, Enter/o open, / filters.  Case: 1-8 causes, a/s/d/f pick a
// candidate, / search, Enter resolve, g catalogue gap, u back to the queue.
(function () {
  function typing(target) {
    return target instanceof HTMLInputElement && target.type !== "checkbox"
      || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement;
  }

  function rows() { return Array.from(document.querySelectorAll("tr.case-row")); }

  function focusRow(index) {
    const all = rows();
    if (!all.length) return;
    const next = Math.max(0, Math.min(all.length - 1, index));
    all.forEach((row, i) => row.classList.toggle("focused", i === next));
    all[next].scrollIntoView({ block: "nearest" });
  }

  function focusedIndex() { return rows().findIndex((row) => row.classList.contains("focused")); }

  function updateCount() {
    const label = document.getElementById("selected-count");
    if (label) label.textContent = `${document.querySelectorAll("input[name=ids]:checked").length} selected`;
  }

  function useSku(button) {
    const input = document.getElementById("correct-sku");
    const label = document.getElementById("correct-sku-label");
    if (!input || !label) return;
    input.value = button.dataset.sku;
    label.innerHTML = "";
    const code = document.createElement("span");
    code.className = "mono";
    code.textContent = button.dataset.code;
    label.append(code, " " + (button.dataset.name || ""));
    document.querySelectorAll(".qa-candidate").forEach((li) => {
      li.classList.toggle("correct", li.dataset.sku === button.dataset.sku);
    });
  }

  document.addEventListener("click", function (event) {
    const use = event.target.closest("button.use-sku");
    if (use) { event.preventDefault(); useSku(use); return; }
    const all = event.target.closest("#select-all");
    if (all) {
      document.querySelectorAll("input[name=ids]").forEach((box) => { box.checked = all.checked; });
      updateCount();
      return;
    }
    if (event.target.matches("input[name=ids]")) { updateCount(); return; }
    const row = event.target.closest("tr.case-row");
    if (row && !event.target.closest("a, input, button")) window.location = row.dataset.url;
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const key = event.key;
    if (document.getElementById("queue-table")) {
      if (key === "j" || key === "ArrowDown") { event.preventDefault(); focusRow(focusedIndex() + 1); }
      else if (key === "k" || key === "ArrowUp") { event.preventDefault(); focusRow(focusedIndex() - 1); }
      else if (key === "x") {
        const row = rows()[focusedIndex()];
        const box = row && row.querySelector("input[name=ids]");
        if (box) { event.preventDefault(); box.checked = !box.checked; updateCount(); }
      } else if (key === "Enter" || key === "o") {
        const row = rows()[Math.max(0, focusedIndex())];
        if (row) { event.preventDefault(); window.location = row.dataset.url; }
      } else if (key === "/") {
        const first = document.querySelector("#queue-filters select");
        if (first) { event.preventDefault(); first.focus(); }
      }
      return;
    }
    const form = document.getElementById("resolve-form");
    if (!form) return;
    const cause = form.querySelector(`input[name=causes][data-key="${key}"]`);
    const pick = document.querySelector(`button.use-sku[data-key="${key}"]`);
    if (cause) { event.preventDefault(); cause.checked = !cause.checked; }
    else if (pick) { event.preventDefault(); useSku(pick); }
    else if (key === "/") { event.preventDefault(); document.getElementById("qa-sku-search").focus(); }
    else if (key === "Enter") { event.preventDefault(); document.getElementById("resolve-btn").click(); }
    else if (key === "g") { event.preventDefault(); document.getElementById("gap-btn").click(); }
    else if (key === "u") { event.preventDefault(); document.getElementById("back-to-queue").click(); }
  });
})();
